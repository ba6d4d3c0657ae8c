//! Text front-end: punctuation normalisation ([`normalize`]), the T3 tokenizer
//! ([`tokenizer`]) and sentence chunking of long text ([`chunk`]).

pub mod chunk;
pub mod normalize;
pub mod tokenizer;

pub use chunk::{chunk_text, ChunkLimits};
pub use normalize::{punc_norm, punc_norm_with, punc_norm_with_enders};
pub use tokenizer::TextTokenizer;
