//! The multilingual Chatterbox model (`ChatterboxMultilingualTTS`, 23 languages): what
//! differs from the English model. [`text`] is its text front-end (the reference
//! `MTLTokenizer` and the multilingual `punc_norm`).

pub mod text;
