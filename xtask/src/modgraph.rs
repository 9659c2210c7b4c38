//! The module dependency graph of each crate in the workspace, and its cycles.
//!
//! Tandem's layout rule is that dependency arrows go one way, between crates (Cargo enforces it)
//! and between the modules inside a crate (nothing does, so this test does). An edge A → B means
//! a file of module A names a path through `crate::B` (or `super::B`) outside comments; a module
//! naming its own ancestor or descendant is not an edge (a parent declares and re-exports its
//! children, a child may use what its parent defines).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path (e.g. `vmx::vcpu`, the crate root is empty) → the module paths it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| !matches!(c.as_str(), "lib" | "main" | "mod"))
        .collect();
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without `//` comments (doc links are not imports) and string literals.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_string && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_string = !in_string;
            } else if !in_string {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the path that starts at `text` (after `crate::`) into full paths, following one level
/// of braces at a time: `a::{b, c::d}` → `a::b`, `a::c::d`.
fn expand(prefix: &str, text: &str, out: &mut Vec<String>) {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(prefix, &group[start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &group[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = text.chars().take_while(|&c| is_ident(c)).collect();
    if ident.is_empty() || ident == "self" {
        if !prefix.is_empty() {
            out.push(prefix.to_string());
        }
        return;
    }
    let path = if prefix.is_empty() {
        ident.clone()
    } else {
        format!("{prefix}::{ident}")
    };
    match text[ident.len()..].trim_start().strip_prefix("::") {
        Some(rest) => expand(&path, rest, out),
        None => out.push(path),
    }
}

/// Every path named after `crate::` or `super::` in `code`, made absolute for module `module`.
fn referenced_paths(module: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (anchor, base) in [("crate::", String::new()), ("super::", parent(module))] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let at = from + at;
            from = at + anchor.len();
            if code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            expand(&base, &code[from..], &mut out);
        }
    }
    out
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The deepest module among `modules` that `path` lies in.
fn owning_module<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a String> {
    let mut candidate = path;
    loop {
        if let Some(m) = modules.get(candidate) {
            return Some(m);
        }
        candidate = candidate.rsplit_once("::")?.0;
    }
}

fn related(a: &str, b: &str) -> bool {
    let inside = |child: &str, ancestor: &str| {
        ancestor.is_empty() || child == ancestor || child.starts_with(&format!("{ancestor}::"))
    };
    inside(a, b) || inside(b, a)
}

/// The module graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(src, file);
        let code = code_only(&fs::read_to_string(file).unwrap_or_default());
        let edges = graph.entry(module.clone()).or_default();
        for path in referenced_paths(&module, &code) {
            if let Some(target) = owning_module(&modules, &path)
                && !related(&module, target)
            {
                edges.insert(target.clone());
            }
        }
    }
    graph
}

/// One cycle per strongly connected component of more than one module, as its members.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                stack.extend(graph.get(&m).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for a in graph.keys() {
        if done.contains(a) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|b| *b == a || (reaches(a, b) && reaches(b, a)))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        if component.len() > 1 {
            out.push(component);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(module: &str, code: &str) -> Vec<String> {
        referenced_paths(module, &code_only(code))
    }

    #[test]
    fn paths_are_expanded_through_braces_and_super() {
        assert_eq!(
            paths("x", "use crate::{apic, vmx::{self, Caps}};"),
            ["apic", "vmx", "vmx::Caps"]
        );
        assert_eq!(
            paths("vmx::vcpu", "use super::ept::build;"),
            ["vmx::ept::build"]
        );
        assert!(paths("x", "// crate::apic\nlet s = \"crate::cpu\";").is_empty());
        assert_eq!(
            paths("x", "tandem_hw::frames; crate::io::outb(1)"),
            ["io::outb"]
        );
    }

    #[test]
    fn a_cycle_is_found_and_parents_are_not_cycles() {
        let mut g = Graph::new();
        g.insert("a".into(), ["b".into()].into());
        g.insert("b".into(), ["c".into()].into());
        g.insert("c".into(), ["a".into()].into());
        g.insert("d".into(), ["a".into()].into());
        assert_eq!(cycles(&g), [["a", "b", "c"]]);
        assert!(related("vmx", "vmx::vcpu") && related("", "apic") && !related("vm", "vmx"));
    }

    /// Every crate of the workspace: no module may depend on itself through others.
    #[test]
    fn no_crate_has_a_module_cycle() {
        let root = crate::root();
        let mut found = Vec::new();
        let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("the workspace manifest");
        let manifest: toml::Value = manifest.parse().expect("the workspace manifest is TOML");
        let members = manifest["workspace"]["members"]
            .as_array()
            .expect("workspace members");
        for member in members {
            let src = root
                .join(member.as_str().expect("a member is a path"))
                .join("src");
            for cycle in cycles(&graph(&src)) {
                found.push(format!(
                    "{}: {}",
                    src.strip_prefix(&root).unwrap_or(&src).display(),
                    cycle.join(" <-> ")
                ));
            }
        }
        assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
    }
}
