//! The tutorial (`docs/tutorial.md`) shows real code, not copies that go stale: every
//! code block other than a shell command (```` ```sh ````) has, on the line before it,
//! `<!-- from: PATH -->`, and the file at PATH (below `examples/`, `tests/` or
//! `turbo-model/`) holds the block's lines, exactly and one after the other. When the
//! code changes, this test names the tutorial's line, the file and the line that no
//! longer matches.

use std::path::{Path, PathBuf};

/// The tutorial, relative to the workspace root.
const TUTORIAL: &str = "docs/tutorial.md";

/// How the line before a block names its file: `<!-- from: PATH -->`.
const MARKER_OPEN: &str = "<!-- from: ";
const MARKER_CLOSE: &str = " -->";

/// The folders a block may be quoted from: the crate, its examples and its tests.
const QUOTABLE: [&str; 3] = ["examples/", "tests/", "turbo-model/"];

/// Fewer checked blocks than this means the tutorial lost its code, or the parser its way.
const MIN_BLOCKS: usize = 10;

/// One fenced code block of the tutorial.
struct Block<'a> {
    /// The 1-based line of the opening fence.
    fence_line: usize,
    /// What follows the opening fence: `rust`, `html`, `sh`...
    lang: &'a str,
    /// The line before the opening fence.
    before: Option<&'a str>,
    /// The lines between the fences.
    lines: Vec<&'a str>,
}

/// The workspace root: the parent of this test crate's folder.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is a folder of the workspace")
        .to_path_buf()
}

/// The fenced blocks of `markdown`, or what is wrong with its fences.
fn blocks(markdown: &str) -> Result<Vec<Block<'_>>, String> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        let fence_line = at + 1;
        if line.trim_start().starts_with("~~~") {
            return Err(format!(
                "{TUTORIAL}:{fence_line}: a `~~~` fence; use ``` so that this test sees the block"
            ));
        }
        let Some(lang) = line.trim_start().strip_prefix("```") else {
            at += 1;
            continue;
        };
        if line.starts_with(char::is_whitespace) {
            return Err(format!(
                "{TUTORIAL}:{fence_line}: an indented fence; put code blocks at the left margin"
            ));
        }
        let close = lines[at + 1..]
            .iter()
            .position(|l| l.trim_end() == "```")
            .map(|offset| at + 1 + offset)
            .ok_or_else(|| format!("{TUTORIAL}:{fence_line}: this block is never closed"))?;
        blocks.push(Block {
            fence_line,
            lang: lang.trim(),
            before: at.checked_sub(1).map(|i| lines[i]),
            lines: lines[at + 1..close].to_vec(),
        });
        at = close + 1;
    }
    Ok(blocks)
}

/// The path of a `<!-- from: PATH -->` line.
fn marker_path(line: &str) -> Option<&str> {
    line.trim_end()
        .strip_prefix(MARKER_OPEN)?
        .strip_suffix(MARKER_CLOSE)
        .map(str::trim)
}

/// Checks one block against the file it names, below `root`.
fn check_block(block: &Block<'_>, root: &Path) -> Result<(), String> {
    let at = format!("{TUTORIAL}:{}", block.fence_line);
    let path = block.before.and_then(marker_path).ok_or_else(|| {
        format!(
            "{at}: the ```{} block has no `{MARKER_OPEN}PATH{MARKER_CLOSE}` line right before it",
            block.lang
        )
    })?;
    if !QUOTABLE.iter().any(|folder| path.starts_with(folder))
        || path.split('/').any(|part| part == ".." || part.is_empty())
    {
        return Err(format!(
            "{at}: `{path}` is not a file below {}",
            QUOTABLE.join(", ")
        ));
    }
    let source = std::fs::read_to_string(root.join(path))
        .map_err(|e| format!("{at}: `{path}` cannot be read: {e}"))?;
    if block.lines.is_empty() {
        return Err(format!("{at}: the block from `{path}` is empty"));
    }
    let file: Vec<&str> = source.lines().collect();
    // The start in the file that matches the longest run of the block's first lines.
    let (start, matched) = (0..file.len())
        .map(|start| {
            let matched = block
                .lines
                .iter()
                .zip(&file[start..])
                .take_while(|(quoted, real)| quoted == real)
                .count();
            (start, matched)
        })
        .max_by_key(|&(start, matched)| (matched, std::cmp::Reverse(start)))
        .unwrap_or((0, 0));
    if matched == block.lines.len() {
        return Ok(());
    }
    let line = block.fence_line + 1 + matched;
    let quoted = block.lines[matched];
    let mut problem = format!("{TUTORIAL}:{line}: not in `{path}`: `{quoted}`");
    if matched > 0 {
        let real = file
            .get(start + matched)
            .copied()
            .unwrap_or("(the end of the file)");
        problem.push_str(&format!(
            "\n    where the lines before it match, `{path}`:{} has: `{real}`",
            start + matched + 1
        ));
    }
    Err(problem)
}

/// Checks every block of `markdown` against the files below `root`: how many blocks
/// were quoted from a file and found there, and what is wrong with the others.
fn check(markdown: &str, root: &Path) -> (usize, Vec<String>) {
    let blocks = match blocks(markdown) {
        Ok(blocks) => blocks,
        Err(problem) => return (0, vec![problem]),
    };
    let mut quoted = 0;
    let mut problems = Vec::new();
    for block in blocks.iter().filter(|b| b.lang != "sh") {
        match check_block(block, root) {
            Ok(()) => quoted += 1,
            Err(problem) => problems.push(problem),
        }
    }
    (quoted, problems)
}

#[test]
fn every_code_block_of_the_tutorial_is_real_code_from_the_file_it_names() {
    let root = workspace_root();
    let markdown = std::fs::read_to_string(root.join(TUTORIAL))
        .unwrap_or_else(|e| panic!("cannot read {TUTORIAL}: {e}"));
    let (quoted, problems) = check(&markdown, &root);
    assert!(
        problems.is_empty(),
        "the tutorial no longer shows the code as it is; update these blocks:\n{}",
        problems.join("\n")
    );
    assert!(
        quoted >= MIN_BLOCKS,
        "{TUTORIAL} has {quoted} code blocks quoted from the code, expected at least {MIN_BLOCKS}"
    );
}

#[test]
fn the_tutorial_check_names_the_line_the_file_and_what_differs() {
    let root = std::env::temp_dir().join(format!("turbo-model-tutorial-{}", std::process::id()));
    let folder = root.join("examples/app");
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("create {}: {e}", folder.display()));
    std::fs::write(
        folder.join("hooks.rs"),
        "struct MessageStream;\n\nimpl Hook for MessageStream {\n    type Entity = message::Entity;\n}\n",
    )
    .unwrap_or_else(|e| panic!("write the quoted file: {e}"));
    let markdown = "\
# Quoting

<!-- from: examples/app/hooks.rs -->
```rust
impl Hook for MessageStream {
    type Entity = message::Entity;
}
```

```sh
scripts/chat
```

<!-- from: examples/app/hooks.rs -->
```rust
impl Hook for MessageStream {
    type Entity = mesage::Entity;
}
```

<!-- from: examples/app/hooks.rs -->
```rust
struct MessageStreams;
```

```rust
struct MessageStream;
```

<!-- from: README.md -->
```toml
[dependencies]
```

<!-- from: examples/app/gone.rs -->
```rust
struct MessageStream;
```
";
    let (quoted, problems) = check(markdown, &root);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(quoted, 1, "{problems:#?}");
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert_eq!(
        problems[..4],
        [
            "docs/tutorial.md:17: not in `examples/app/hooks.rs`: `    type Entity = mesage::Entity;`\n    where the lines before it match, `examples/app/hooks.rs`:4 has: `    type Entity = message::Entity;`",
            "docs/tutorial.md:23: not in `examples/app/hooks.rs`: `struct MessageStreams;`",
            "docs/tutorial.md:26: the ```rust block has no `<!-- from: PATH -->` line right before it",
            "docs/tutorial.md:31: `README.md` is not a file below examples/, tests/, turbo-model/",
        ],
        "{problems:#?}"
    );
    assert!(
        problems[4].starts_with("docs/tutorial.md:36: `examples/app/gone.rs` cannot be read: "),
        "{problems:#?}"
    );
}
