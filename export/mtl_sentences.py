"""Golden sentences of the multilingual text front-end, per language.

Shared by `mtl_vocab.py` (the Cangjie table must cover every Chinese glyph used
here and in tests/data/mtl_frontend/corpus_zh.txt) and `mtl_text_goldens.py`.
"""

from __future__ import annotations

SENTENCES: dict[str, list[str]] = {
    "zh": [
        "我们今天去北京，好吗？天气很好……",
        "他说：“这本书只要25元！”",
        "這個問題很難回答；請你幫我一個忙。",
        "人工智能正在改变我们的生活, AI很重要...",
        "我家有四口人：爸爸、妈妈、哥哥和我",
        "价格从１００元涨到了１２０元 - 真贵",
        "  长城是世界上最伟大的建筑之一  ",
        "他点了点头，我们到达了上海",
        "这是日本的「すし」和龘字",
    ],
}
