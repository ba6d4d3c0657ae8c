//! `Session::run_in_place` on the `toy_state` fixture (`y = 2 x`, `state_out = state + x`):
//! state bound as input and output is updated in its own buffer, the other outputs come back,
//! and misuse is a typed error naming the tensor.

mod runtime_common;

use chatterbox_ort::bundle::Bundle;
use chatterbox_ort::error::ErrorKind;
use chatterbox_ort::runtime::{Session, SessionOptions, StateTensor, Value};
use runtime_common::*;

fn session(dir: &Scratch) -> Session {
    write_bundle(dir.path(), &[("state", "toy_state")]);
    let bundle = Bundle::open(dir.path()).unwrap();
    let spec = bundle.component("state").unwrap().clone();
    let opts = SessionOptions {
        threads: 1,
        ..SessionOptions::default()
    };
    Session::create(bundle.dir(), "state", &spec, &opts).unwrap()
}

fn state(value: Value) -> StateTensor {
    StateTensor {
        input: "state".into(),
        output: "state_out".into(),
        value,
    }
}

#[test]
fn state_is_updated_in_its_own_buffer() {
    init_runtime();
    let dir = Scratch::new("in_place");
    let mut s = session(&dir);
    let mut v = s.alloc_f32(&[1, 4]).unwrap();
    assert!(v.is_on_host());
    v.f32_slice_mut()
        .unwrap()
        .copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
    let before = v.f32_slice().unwrap().as_ptr();
    let mut st = [state(v)];
    for step in 1..=3 {
        let x = Value::from_f32(&[1, 4], vec![10.0, 20.0, 30.0, 40.0]).unwrap();
        let mut out = s.run_in_place(vec![("x", x)], &mut st).unwrap();
        assert_eq!(
            out.names(),
            vec!["y".to_string()],
            "state outputs are not returned"
        );
        let y = out.take("y").unwrap();
        assert_eq!(y.f32_slice().unwrap(), &[20.0, 40.0, 60.0, 80.0]);
        let k = step as f32;
        assert_eq!(
            st[0].value.f32_slice().unwrap(),
            &[
                1.0 + 10.0 * k,
                2.0 + 20.0 * k,
                3.0 + 30.0 * k,
                4.0 + 40.0 * k
            ],
            "step {step}"
        );
    }
    assert_eq!(st[0].value.f32_slice().unwrap().as_ptr(), before);
    assert_eq!(s.timings().runs, 3);

    // Host copies: to_host and copy_from.
    let copy = st[0].value.to_host().unwrap();
    assert_eq!(copy.f32_slice().unwrap(), st[0].value.f32_slice().unwrap());
    let mut other = Value::alloc_f32(&[1, 4]).unwrap();
    other.copy_from(&copy).unwrap();
    assert_eq!(other.f32_slice().unwrap(), copy.f32_slice().unwrap());
    assert!(other
        .copy_from(&Value::alloc_f32(&[1, 5]).unwrap())
        .is_err());
}

#[test]
fn misuse_is_a_typed_error() {
    init_runtime();
    let dir = Scratch::new("in_place_err");
    let mut s = session(&dir);
    let x = || Value::from_f32(&[1, 4], vec![0.0; 4]).unwrap();
    let alloc = |n: usize| Value::alloc_f32(&[1, n]).unwrap();

    // The state input is checked with the others (symbolic dims agree).
    let e = s
        .run_in_place(vec![("x", x())], &mut [state(alloc(5))])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ModelMismatch, "{e}");
    assert!(e.to_string().contains("`state`"), "{e}");

    // A state input given as a plain input too.
    let e = s
        .run_in_place(vec![("x", x()), ("state", x())], &mut [state(alloc(4))])
        .unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");

    // Unknown output; output bound twice.
    let mut bad = state(alloc(4));
    bad.output = "nope".into();
    let e = s.run_in_place(vec![("x", x())], &mut [bad]).unwrap_err();
    assert!(e.to_string().contains("unknown output `nope`"), "{e}");
    let mut twice = [state(alloc(4)), state(alloc(4))];
    twice[1].input = "x".into();
    let e = s.run_in_place(vec![], &mut twice).unwrap_err();
    assert!(e.to_string().contains("bound twice"), "{e}");

    // A tensor made from host data cannot be an output.
    let e = s
        .run_in_place(vec![("x", x())], &mut [state(x())])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Runtime, "{e}");
    assert!(e.to_string().contains("state_out"), "{e}");

    // Nothing bound in place is still a plain run.
    let mut out = s.run_in_place(vec![("x", x()), ("state", x())], &mut []);
    assert!(out.as_mut().unwrap().take("state_out").is_ok());
}
