//! The one place the pipeline branches on the model family (`model.family` of the
//! manifest): the text front-end, the T3 conditioning, T3's token generation with
//! its sampler chain, and what S3Gen gets of the sampled tokens. The original
//! model's pieces live in [`crate::text`], [`crate::conditioning`] and [`crate::t3`];
//! Turbo's own in [`crate::turbo`]. Everything after the tokens (S3Gen, HiFT,
//! Perth) and before them (voice building, from the manifest's numbers) is shared.

use crate::bundle::{Bundle, Family, Voice};
use crate::conditioning;
use crate::engine::{suppress_non_speech, Request};
use crate::error::{Error, Result};
use crate::multilingual::alignment::AlignmentAnalyzer;
use crate::multilingual::text::MtlTokenizer;
use crate::multilingual::Language;
use crate::residency::Host;
use crate::rng::EngineRng;
use crate::t3::{self, decode, sampler, T3Dims};
use crate::text;
use crate::turbo;

/// The text tokenizer of the bundle's family.
#[derive(Debug)]
pub enum T3Frontend {
    /// The original model's 704-token BPE with `[SPACE]`, start and stop tokens.
    Original(text::TextTokenizer),
    /// Turbo's GPT-2 BPE with the paralinguistic tags.
    Turbo(turbo::text::TurboTokenizer),
    /// The multilingual grapheme tokenizer with its per-language front-end (boxed: it
    /// holds two tokenizers' worth of tables).
    Multilingual(Box<MtlTokenizer>),
}

impl T3Frontend {
    /// Loads the bundle's `tokenizer.json` as its family reads it.
    pub fn load(bundle: &Bundle) -> Result<T3Frontend> {
        let text_config = &bundle.config().text;
        Ok(match bundle.manifest().model.family {
            Family::Original => T3Frontend::Original(text::TextTokenizer::from_file(
                &bundle.tokenizer_path(),
                text_config.vocab_size,
            )?),
            Family::Turbo => T3Frontend::Turbo(turbo::text::TurboTokenizer::from_file(
                &bundle.tokenizer_path(),
                text_config.vocab_size,
                &text_config.tags,
            )?),
            Family::Multilingual => {
                let cangjie = bundle.cangjie_path().ok_or_else(|| {
                    Error::bundle(
                        bundle.path(crate::bundle::MANIFEST_FILE),
                        "`config.text.cangjie` is missing",
                    )
                })?;
                T3Frontend::Multilingual(Box::new(MtlTokenizer::from_files(
                    &bundle.tokenizer_path(),
                    &cangjie,
                    text_config.vocab_size,
                )?))
            }
        })
    }

    /// The language id the multilingual front-end gets (checked by the engine before).
    fn language(language: Option<Language>) -> Result<Language> {
        language.ok_or_else(|| {
            Error::invalid_argument(
                "language",
                "a multilingual bundle needs the text's language",
            )
        })
    }

    /// Token count of `text` (no normalisation, no start/stop), for chunking.
    pub fn count_tokens(&self, text: &str, language: Option<Language>) -> Result<usize> {
        match self {
            T3Frontend::Original(t) => t.count_tokens(text),
            T3Frontend::Turbo(t) => t.count_tokens(text),
            T3Frontend::Multilingual(t) => t.count_tokens(text, Self::language(language)?.as_str()),
        }
    }

    /// Text tokens the family adds around a chunk (start and stop: 2; Turbo: 0).
    pub fn special_text_tokens(&self) -> usize {
        match self {
            T3Frontend::Original(_) | T3Frontend::Multilingual(_) => 2,
            T3Frontend::Turbo(_) => 0,
        }
    }

    /// The family's `punc_norm` and tokenization of one chunk, as the reference's
    /// `generate` does it.
    pub fn text_ids(&self, chunk: &str, language: Option<Language>) -> Result<Vec<i64>> {
        match self {
            T3Frontend::Original(t) => t.encode_with_start_stop(&text::punc_norm(chunk)),
            T3Frontend::Turbo(t) => t.encode(&turbo::text::punc_norm(chunk)),
            T3Frontend::Multilingual(t) => t.encode_with_start_stop(
                &MtlTokenizer::punc_norm(chunk),
                Self::language(language)?.as_str(),
            ),
        }
    }

    /// One-line warnings for what the family ignores: top-k on the original model;
    /// CFG, min_p and exaggeration on Turbo (as the reference warns), and bracketed
    /// words that are not one of Turbo's tags.
    pub fn warn_ignored(&self, text: &str, req: &Request) {
        match self {
            T3Frontend::Original(_) | T3Frontend::Multilingual(_) => {
                if req.top_k > 0 {
                    tracing::warn!(
                        "the original model has no top-k; ignoring top_k {}",
                        req.top_k
                    );
                }
            }
            T3Frontend::Turbo(tok) => {
                let mut ignored = Vec::new();
                if req.cfg_weight > 0.0 {
                    ignored.push(format!("cfg_weight {}", req.cfg_weight));
                }
                if req.min_p > 0.0 {
                    ignored.push(format!("min_p {}", req.min_p));
                }
                if req.exaggeration > 0.0 {
                    ignored.push(format!("exaggeration {}", req.exaggeration));
                }
                if !ignored.is_empty() {
                    tracing::warn!(
                        "Turbo has no CFG, min_p or exaggeration; ignoring {}",
                        ignored.join(", ")
                    );
                }
                let unknown = tok.unknown_tags(text);
                if !unknown.is_empty() {
                    tracing::warn!(
                        "unknown tag(s) {} are read as plain text; Turbo's tags are {}",
                        unknown.join(", "),
                        tok.tags().join(" ")
                    );
                }
            }
        }
    }
}

/// The T3 conditioning of `voice`: `[cond_len, D]` (original: speaker, perceiver
/// of the prompt, exaggeration) or `[1 + P, D]` (Turbo: speaker and the prompt's
/// speech embeddings).
pub fn t3_conditioning(
    host: &Host,
    family: Family,
    dims: &T3Dims,
    voice: &Voice,
    req: &Request,
) -> Result<Vec<f32>> {
    match family {
        Family::Original | Family::Multilingual => {
            conditioning::t3_cond(host, dims, voice, req.exaggeration)
        }
        Family::Turbo => {
            let speaker: Vec<f32> = voice.speaker_emb.iter().copied().collect();
            let prompt: Vec<i64> = voice.cond_prompt_speech_tokens.iter().copied().collect();
            turbo::t3::cond(host, dims, &speaker, &prompt)
        }
    }
}

/// T3 for one chunk's text ids, with the family's sampler chain: the original
/// model's CFG pair and learned positions, or Turbo's GPT-2 without CFG. With
/// `req.min_new_tokens`, non-speech tokens are suppressed until that many tokens
/// are drawn. `on_token(n, token)` gets the count of tokens so far and the token just
/// drawn (never the stop token); `false` cancels.
/// `prefix` (Turbo) keeps the conditioning's KV cache for the next call with the
/// same voice.
/// Returns the sampled tokens (a drawn stop token included).
#[allow(clippy::too_many_arguments)]
pub fn generate_speech_tokens(
    host: &Host,
    bundle: &Bundle,
    dims: &T3Dims,
    prefix: Option<&turbo::t3::CondPrefixCache>,
    cond: &[f32],
    ids: &[i64],
    req: &Request,
    rng: &mut EngineRng,
    on_token: &mut dyn FnMut(usize, i64) -> bool,
) -> Result<Vec<i64>> {
    match bundle.manifest().model.family {
        family @ (Family::Original | Family::Multilingual) => {
            let params = req.sampler_params();
            // The multilingual model's alignment checks; its prefill is
            // `cond | text | bos | bos`: the text sits after the conditioning.
            let mut analyzer = match family {
                Family::Multilingual => Some(AlignmentAnalyzer::new(
                    dims.cond_len,
                    dims.cond_len + ids.len(),
                    usize::try_from(dims.speech_stop).unwrap_or(usize::MAX),
                )?),
                _ => None,
            };
            decode::generate(
                host,
                dims,
                cond,
                ids,
                decode::GenerateOptions {
                    cfg_weight: req.cfg_weight,
                    max_new_tokens: req.max_new_tokens,
                },
                |step| {
                    // T3.inference: CFG, (multilingual) the alignment checks, then
                    // repetition penalty, temperature, min-p, top-p.
                    let mut guided = sampler::guide(step.cond, step.uncond, &params)?;
                    if let Some(a) = analyzer.as_mut() {
                        let rows = step.alignment.ok_or_else(|| {
                            Error::model_mismatch(
                                "t3_decoder",
                                "the multilingual t3_decoder has no `alignment` output; \
                                 re-export the bundle with export/export_bundle.py --family \
                                 multilingual",
                            )
                        })?;
                        a.step(
                            rows.values,
                            rows.rows,
                            rows.capacity,
                            step.history.last().copied(),
                            &mut guided,
                        )?;
                    }
                    // history holds BOS plus the tokens so far.
                    if step.history.len() <= req.min_new_tokens {
                        guided = suppress_non_speech(&guided, None, dims.num_codes).0;
                    }
                    sampler::draw(
                        &sampler::process_guided(guided, step.history, &params)?,
                        rng,
                    )
                },
                |i, token| on_token(i + 1, token),
            )
        }
        Family::Turbo => {
            let params = turbo::sampler::TurboSamplerParams {
                temperature: req.temperature,
                top_k: req.top_k,
                top_p: req.top_p,
                repetition_penalty: req.repetition_penalty,
            };
            let max_positions = bundle.config().t3.max_positions.unwrap_or(usize::MAX);
            turbo::t3::generate(
                host,
                dims,
                max_positions,
                prefix,
                cond,
                ids,
                req.max_new_tokens,
                |step| {
                    let penalised = turbo::sampler::penalised_ids(step.history);
                    if step.history.len() <= req.min_new_tokens {
                        let (logits, _) = suppress_non_speech(step.cond, None, dims.num_codes);
                        turbo::sampler::sample(&logits, penalised, &params, rng)
                    } else {
                        turbo::sampler::sample(step.cond, penalised, &params, rng)
                    }
                },
                |i, token| on_token(i + 1, token),
            )
        }
    }
}

/// What S3Gen gets of the tokens sampled so far while T3 is still decoding: as
/// [`tokens_for_s3gen`] but without what only the end adds (Turbo's `S3GEN_SIL` tokens).
pub fn partial_tokens_for_s3gen(bundle: &Bundle, dims: &T3Dims, sampled: &[i64]) -> Vec<i64> {
    match bundle.manifest().model.family {
        Family::Original | Family::Multilingual => t3::drop_invalid_tokens(sampled, dims),
        Family::Turbo => turbo::t3::speech_tokens_for_s3gen(sampled, dims.num_codes, None, 0),
    }
}

/// What S3Gen gets of the sampled tokens: the original's `drop_invalid_tokens`, or
/// Turbo's filter and the appended `S3GEN_SIL` tokens.
pub fn tokens_for_s3gen(bundle: &Bundle, dims: &T3Dims, sampled: &[i64]) -> Vec<i64> {
    match bundle.manifest().model.family {
        Family::Original | Family::Multilingual => t3::drop_invalid_tokens(sampled, dims),
        Family::Turbo => {
            let speech = &bundle.config().speech;
            turbo::t3::speech_tokens_for_s3gen(
                sampled,
                dims.num_codes,
                speech.silence_token,
                speech.silence_tokens,
            )
        }
    }
}
