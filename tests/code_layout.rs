//! The shape the code keeps (STYLE.md, DESIGN.md): no file past 600 lines, no Rust module that
//! imports from a module above it (the order is lib.rs's map, `web` on top), and JavaScript
//! modules without import cycles, with `index.js` only re-exporting.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// Modules from the bottom up; a module may use those before it, never those after.
const LAYERS: &[&[&str]] = &[
    &["hex", "rng", "retry", "block_on", "oneshot"],
    &["store"],
    &["download"],
    &["gguf"],
    &["tokenizer"],
    &["chat"],
    &["engine"],
    &["structured"],
    &["openai"],
    &["router"],
    &["web"],
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !["node_modules", "pkg", "target", "icons", "data"].contains(&name.as_str()) {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn sources(dirs: &[&str], endings: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let dir = root().join(d);
        if dir.exists() {
            files(&dir, &mut out);
        }
    }
    out.retain(|p| endings.iter().any(|e| p.to_string_lossy().ends_with(e)));
    out.sort();
    out
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let all = sources(
        &[
            "src", "tests", "crates", "examples", "shaders", "scripts", "www",
        ],
        &[
            ".rs", ".js", ".mjs", ".wgsl", ".sh", ".py", ".html", ".css", ".d.ts",
        ],
    );
    assert!(all.len() > 100, "found {} files", all.len());
    let long: Vec<String> = all
        .iter()
        .filter_map(|p| {
            let n = fs::read_to_string(p).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// The top module a `src/` file belongs to.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(root().join("src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn no_module_imports_from_a_module_above_it() {
    let rank: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
        .collect();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for path in sources(&["src"], &[".rs"]) {
        let module = module_of(&path);
        if module == "lib" {
            continue;
        }
        let own = *rank
            .get(module.as_str())
            .unwrap_or_else(|| panic!("module {module} is not in LAYERS"));
        let text = fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let used: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            seen.insert(used.clone());
            let Some(&theirs) = rank.get(used.as_str()) else {
                panic!("{}: crate::{used} is not in LAYERS", path.display());
            };
            if theirs > own {
                wrong.push(format!("{} uses crate::{used}", path.display()));
            }
        }
    }
    assert!(seen.len() >= 8, "the scan found the imports: {seen:?}");
    assert!(wrong.is_empty(), "imports from above: {wrong:?}");
}

/// The `./x.js` modules a JavaScript file imports or re-exports.
fn imports(text: &str) -> Vec<String> {
    text.split("from '")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .filter(|m| m.starts_with("./"))
        .map(|m| m.trim_start_matches("./").to_string())
        .collect()
}

#[test]
fn the_javascript_modules_form_no_cycle_and_index_only_reexports() {
    let lib = root().join("www/lib");
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in sources(&["www/lib"], &[".js"]) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        graph.insert(name, imports(&fs::read_to_string(&path).unwrap()));
    }
    assert!(
        graph.len() >= 8 && graph["index.js"].len() >= 6,
        "{graph:?}"
    );
    // Depth-first, with the path so far: a module met again on its own path is a cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[i..].join(" -> "));
        }
        if !done.insert(m.to_string()) {
            return;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    let index = fs::read_to_string(lib.join("index.js")).unwrap();
    let code: String = index
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        assert!(
            statement.starts_with("export") && statement.contains(" from '"),
            "index.js does more than re-export: {statement}"
        );
    }
}
