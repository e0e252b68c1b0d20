//! Profiling asked for while a step holds the model (as a GPU step does across its readback)
//! starts before the next step, a read meanwhile gets the last step's profile, and a stop asked
//! for mid-step stops it: the browser's `profile(true)` during a GPU answer used to be dropped.

mod common;

use std::rc::Rc;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::gguf::Architecture;
use candlelight::openai::{LocalModel, SharedModel};
use candlelight_fixtures::{build, FixtureSpec, Quant};

fn shared() -> Rc<SharedModel> {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0)).to_bytes();
    let (store, file) = common::store(&bytes);
    let cpu = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    SharedModel::new(LocalModel::new("tiny", &file, Box::new(cpu)).unwrap())
}

fn answer(shared: &Rc<SharedModel>, max_tokens: u32) {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    });
    let turn = block_on(shared.turn());
    block_on(turn.start(serde_json::from_value(body).unwrap(), "id".into(), 1)).unwrap();
    while block_on(turn.step()).unwrap().is_some() {}
}

fn steps(json: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["steps"].as_u64().unwrap()
}

#[test]
fn profiling_asked_for_during_a_step_takes_effect_after_it() {
    let shared = shared();
    // A reader holding the model stands for a step in flight: the model cannot be borrowed.
    let busy = shared.model();
    assert_eq!(shared.profile(Some(true)), None);
    drop(busy);
    answer(&shared, 4);
    let first = shared
        .profile(None)
        .expect("profiling started before the next step");
    assert!(steps(&first) > 0, "{first}");
    let busy = shared.model();
    assert_eq!(shared.profile(None).as_deref(), Some(first.as_str()));
    assert_eq!(shared.profile(Some(false)).as_deref(), Some(first.as_str()));
    drop(busy);
    answer(&shared, 2);
    assert_eq!(shared.profile(None), None, "stopped before the next step");
}
