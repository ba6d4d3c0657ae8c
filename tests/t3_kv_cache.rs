//! The T3 decoder's in-place KV cache on the tiny bundle: a decoder started from another's
//! prefix continues bit for bit like it, the cache's bounds are typed errors before any
//! run, and a bundle of the older export (no `past_len`) is named as such.

mod pipeline_support;

use std::sync::Arc;

use chatterbox_ort::bundle::Bundle;
use chatterbox_ort::residency::Host;
use chatterbox_ort::runtime::Provider;
use chatterbox_ort::t3::decode::KvDecoder;
use chatterbox_ort::t3::T3Dims;
use chatterbox_ort::ErrorKind;
use pipeline_support::{bundle_dir, engine, scratch};

/// `[batch, seq, D]` embeds, fixed and distinct per call (`salt`).
fn embeds(batch: usize, seq: usize, d: usize, salt: usize) -> Vec<f32> {
    (0..batch * seq * d)
        .map(|i| (((i + 31 * salt) * 7919) % 17) as f32 * 0.04 - 0.3)
        .collect()
}

#[test]
fn a_decoder_from_a_prefix_continues_bit_for_bit() {
    let e = engine();
    let (host, dims) = (e.host(), e.t3_dims());
    let d = dims.hidden;
    let mut a = KvDecoder::new(host, dims, 1, 14).unwrap();
    a.forward(embeds(1, 8, d, 0), 8).unwrap();
    let prefix = a.prefix().unwrap();
    assert_eq!(prefix.rows(), 8);
    // Another capacity: the prefix is copied slab by slab.
    let mut b = KvDecoder::from_prefix(host, dims, &prefix, 20).unwrap();
    assert_eq!((b.past_len(), b.capacity()), (8, 20));
    for (salt, seq) in [(1, 3), (2, 1), (3, 1)] {
        let la = a.forward(embeds(1, seq, d, salt), seq).unwrap();
        let lb = b.forward(embeds(1, seq, d, salt), seq).unwrap();
        assert_eq!(
            la.f32_slice().unwrap(),
            lb.f32_slice().unwrap(),
            "seq {seq}"
        );
    }
    assert_eq!(a.past_len(), 13);
    let (pa, pb) = (a.prefix().unwrap(), b.prefix().unwrap());
    assert_eq!(format!("{pa:?}"), format!("{pb:?}"));
    let e = KvDecoder::from_prefix(host, dims, &pa, 12).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn cache_bounds_are_checked_before_running() {
    let e = engine();
    let (host, dims) = (e.host(), e.t3_dims());
    let d = dims.hidden;
    let mut small = KvDecoder::new(host, dims, 1, 4).unwrap();
    let err = small.forward(embeds(1, 5, d, 0), 5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("max_new_tokens"), "{err}");
    assert_eq!(small.past_len(), 0);
    small.forward(embeds(1, 4, d, 0), 4).unwrap();
    assert!(small.forward(embeds(1, 1, d, 1), 1).is_err(), "full");

    // Batch 2 (CFG): a multi-position chunk after cached positions is refused.
    let mut cfg = KvDecoder::new(host, dims, 2, 10).unwrap();
    cfg.forward(embeds(2, 3, d, 0), 3).unwrap();
    let err = cfg.forward(embeds(2, 2, d, 1), 2).unwrap_err();
    assert!(err.to_string().contains("batch 1"), "{err}");
    let logits = cfg.forward(embeds(2, 1, d, 2), 1).unwrap();
    assert_eq!(logits.shape(), vec![2, 1, dims.speech_vocab]);
    assert_eq!(cfg.past_len(), 4);
}

#[test]
fn an_older_export_is_named() {
    pipeline_support::engine(); // initialises the runtime
    let src = bundle_dir();
    let dir = scratch("t3_old_export");
    pipeline_support::copy_bundle(&src, &dir);
    pipeline_support::edit_manifest(&dir, |m| {
        m["components"]["t3_decoder"]["inputs"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["name"] != "past_len");
    });
    let bundle = Arc::new(Bundle::open(&dir).unwrap());
    let dims = T3Dims::from_config(bundle.config());
    let host = Host::new(bundle, Provider::Cpu, Some(1), "swap".parse().unwrap()).unwrap();
    let err = KvDecoder::new(&host, &dims, 1, 8).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::ModelMismatch, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no `past_len` input") && msg.contains("export/export_bundle.py"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
