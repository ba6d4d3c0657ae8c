"""Golden sentences of the multilingual text front-end, per language.

Shared by `mtl_vocab.py` (the Cangjie table must cover every Chinese glyph used
here and in tests/data/mtl_frontend/corpus_zh.txt) and `mtl_text_goldens.py`.
"""

from __future__ import annotations

SENTENCES: dict[str, list[str]] = {
    "ar": [
        "مرحبا! كيف حالك؟ لدي 3 كتب جديدة...",
        "قال المعلم: “الدرس يبدأ الساعة ٨ صباحاً”؛ لا تتأخر",
        "السلام عليكم ورحمة الله، هذه مدينة القاهرة",
    ],
    "da": [
        "Hej! Jeg hedder Søren og bor i Århus; det er 2024...",
        "“Æbler og pærer” koster 15 kr. – ikke mere",
        "hvor er du? jeg venter ved stationen…",
    ],
    "de": [
        "Die Straße ist 5 km lang – „Wirklich?“ fragte er.",
        "ÜBERMÄSSIG große Äpfel: 3,50 € pro Kilo; Grüße aus Köln…",
        "ẞ ist der große Buchstabe von ß",
        "über den Fluss... und zurück",
    ],
    "el": [
        "ΟΔΥΣΣΕΑΣ ΣΟΦΟΣ: ο ήρωας της Οδύσσειας.",
        "Καλημέρα! Τι κάνεις; Έχω 2 γάτες…",
        "σήμερα είναι μια όμορφη μέρα – πάμε στη θάλασσα",
    ],
    "en": [
        "Hello... World: it\u2019s \u201cgreat\u201d; isn\u2019t it?",
        "the year 1999 was - in many ways - remarkable",
        "MIXED Case text with numbers 42 and 3.14",
    ],
    "es": [
        "¿Qué tal? ¡Muy bien! Son las 3:30…",
        "El niño comió piñas en Málaga; “¡qué rico!”",
        "árbol, canción y pingüino son 3 palabras",
    ],
    "fi": [
        "Hyvää päivää! Äiti ja isä asuvat Öljytiellä 12.",
        "Mitä kuuluu? Minulla on kaksi koiraa...",
        "tämä on – ehkä – paras päivä: kiitos",
    ],
    "fr": [
        "L\u2019été dernier, j\u2019ai visité Paris : c\u2019était magnifique…",
        "« Bonjour ! » dit-elle ; l’œuvre coûte 20 €.",
        "Ça va? Où est le café? À bientôt",
    ],
    "he": [
        "שלום! מה שלומך? יש לי 2 ילדים...",
        "הוא אמר: “אני אוהב את ירושלים”; נכון",
        "שָׁלוֹם עֲלֵיכֶם – בוקר טוב",
    ],
    "hi": [
        "नमस्ते! आप कैसे हैं? मेरे पास 5 किताबें हैं।",
        "भारत की राजधानी दिल्ली है; यह बहुत बड़ा शहर है…",
        "क़लम, ज़मीन और फ़िल्म: तीन शब्द",
    ],
    "it": [
        "Perché no? È già tardi: sono le 10…",
        "L\u2019università è a 3 km; “andiamo!”",
        "città, caffè e perciò... basta",
    ],
    "ja": [
        "今日は母へ手紙を書きます。",
        "ガッコウでパンを食べた！ぱぴぷぺぽ、ばびぶべぼ。",
        "東京タワーは３３３メートルです…すごい！",
        "私は学生です。日本語を勉強しています",
        "コーヒーとケーキをください、ありがとう",
        "へいわな世界: 平和と希望",
    ],
    "ko": [
        "안녕하세요! 저는 학생입니다. 오늘은 3월 1일이에요…",
        "“한국어”를 배우고 있어요; 정말 재미있어요",
        "서울의 날씨는 어때요? 괜찮아요",
    ],
    "ms": [
        "Selamat pagi! Saya ada 2 buah kereta; terima kasih...",
        "Kuala Lumpur ialah ibu negara Malaysia: “cantik”",
        "apa khabar? baik – terima kasih",
    ],
    "nl": [
        "Goedemorgen! Het is 12 graden in \u2019s-Hertogenbosch…",
        "De ĳsbeer zwemt; “Wat mooi!” zei Anna",
        "hoe gaat het? prima, dank je wel...",
    ],
    "no": [
        "Hei! Jeg bor i Tromsø — det er kaldt om vinteren.",
        "Blåbær og jordbær koster 30 kr; “Ja takk!”",
        "æ, ø og å er norske bokstaver...",
    ],
    "pl": [
        "Zażółć gęślą jaźń! Łódź to 3. miasto...",
        "Dzień dobry; “Jak się masz?” – zapytał",
        "żółw i źrebię: dwa słowa…",
    ],
    "pt": [
        "Olá! Não sei se ele está em São Paulo: talvez…",
        "A coração bate 70 vezes por minuto; “ótimo!”",
        "você já comeu pão de queijo...",
    ],
    "ru": [
        "Привет! Ёлка стоит в углу; ей 5 лет...",
        "Он сказал: “Москва — столица России”",
        "ЁЖИК В ТУМАНЕ – отличный мультфильм…",
    ],
    "sv": [
        "Hej! Vi ses på fredag kl. 18:00…",
        "Smörgåsbord är gott; “Tack så mycket!”",
        "älgen gick över vägen...",
    ],
    "sw": [
        "Habari za asubuhi? Nina watoto 3; wote wanasoma...",
        "Mwalimu alisema: “Karibu sana!”",
        "jambo – asante sana rafiki…",
    ],
    "tr": [
        "İstanbul'da ılık bir gün. IŞIK ve ışık...",
        "Türkçe öğreniyorum; “Çok güzel!” dedi",
        "ılık süt içtim: 2 bardak…",
    ],
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
