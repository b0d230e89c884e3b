//! The crate's unit tests without the standard test harness, for targets that have
//! none (the bare-metal rv32 runner in `firmware/rv32-selftest` runs them under QEMU).
//!
//! Each module's `tests` compiles under `cfg(test)` (host `cargo test` runs them
//! as usual) and under the `selftest` feature, and lists its tests in `TESTS`. A
//! test runs by being called: it passes by returning and fails by panicking, so a
//! runner's panic handler reports the first failure.
//!
//! A host test below reads each module's source and checks that its list names
//! every test in it, so a test added without registering it fails `cargo test`.

/// Names each module's test list once, for [`all`] and for the host check.
macro_rules! modules {
    ($($module:ident),* $(,)?) => {
        const MODULES: &[(&str, &[(&str, fn())])] = &[
            $((stringify!($module), crate::$module::tests::TESTS),)*
        ];

        /// The source of each listed module, for the registration check.
        #[cfg(test)]
        const SOURCES: &[(&str, &str)] = &[
            $((stringify!($module), include_str!(concat!(stringify!($module), ".rs"))),)*
        ];
    };
}

modules!(
    channel, connection, dedup, failure, leave, link, outbox, reliable, retry, rpc, stream,
    selftest,
);

/// Every registered test as (module, test name, test function), module by module
/// in a fixed order.
pub fn all() -> impl Iterator<Item = (&'static str, &'static str, fn())> {
    MODULES
        .iter()
        .flat_map(|&(module, tests)| tests.iter().map(move |&(name, f)| (module, name, f)))
}

/// The marker a test function carries to run both on the host and in a selftest.
const MARK: &str = "#[cfg_attr(test, test)]";

/// The names of the functions marked as tests in `source`, in order.
///
/// Attributes and comments may stand between the mark and the `fn`.
fn marked_tests(source: &str) -> alloc::vec::Vec<&str> {
    let mut names = alloc::vec::Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARK {
            continue;
        }
        for next in lines.by_ref() {
            let next = next.trim();
            if next.is_empty() || next.starts_with("#[") || next.starts_with("//") {
                continue;
            }
            let name = next
                .strip_prefix("fn ")
                .and_then(|rest| rest.split(['(', '<']).next())
                .unwrap_or_else(|| panic!("{MARK} is not followed by a fn: {next:?}"));
            names.push(name.trim());
            break;
        }
    }
    names
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    fn marked_tests_are_found_through_attributes_and_comments() {
        let source = concat!(
            "    #[cfg_attr(test, test)]\n",
            "    fn first() {}\n",
            "    fn helper() {}\n",
            "    #[cfg_attr(test, test)]\n",
            "    // why this one matters\n",
            "    #[allow(unused)]\n",
            "\n",
            "    fn second() {}\n",
        );
        assert_eq!(marked_tests(source), ["first", "second"]);
    }

    #[cfg_attr(test, test)]
    fn every_module_is_listed_once_and_no_list_is_empty() {
        for (i, &(module, tests)) in MODULES.iter().enumerate() {
            assert!(!tests.is_empty(), "{module} lists no test");
            assert!(
                MODULES[..i].iter().all(|&(other, _)| other != module),
                "{module} is listed twice"
            );
        }
        assert_eq!(all().count(), MODULES.iter().map(|m| m.1.len()).sum());
    }

    // host-only: reads the crate's sources (std::fs, include_str!).
    #[test]
    fn every_test_is_registered_for_the_selftest() {
        extern crate std;
        use alloc::string::String;
        use alloc::vec::Vec;
        use std::{fs, path::Path};

        // Each listed module's TESTS names exactly its marked tests, in order.
        for &(module, source) in SOURCES {
            let listed: Vec<&str> = MODULES
                .iter()
                .find(|m| m.0 == module)
                .map(|m| m.1.iter().map(|t| t.0).collect())
                .unwrap_or_default();
            assert_eq!(
                marked_tests(source),
                listed,
                "src/{module}.rs: its TESTS must list every #[cfg_attr(test, test)] fn, in order"
            );
        }

        // Every source file with tests is listed, and its tests carry the mark
        // (a plain #[test] is host-only and says why on the line before it).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut unlisted = Vec::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let module = path.file_stem().unwrap().to_str().unwrap();
            let text = fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim() == "#[test]" {
                    let why = i.checked_sub(1).map(|p| lines[p].trim()).unwrap_or("");
                    assert!(
                        why.starts_with("// host-only:"),
                        "src/{module}.rs:{}: a #[test] that the selftest cannot run \
                         needs a `// host-only: <why>` line before it; \
                         otherwise mark it {MARK} and add it to TESTS",
                        i + 1
                    );
                }
            }
            if text.contains(MARK) && !SOURCES.iter().any(|s| s.0 == module) {
                unlisted.push(String::from(module));
            }
        }
        assert!(
            unlisted.is_empty(),
            "modules with tests missing from selftest.rs's modules!(...): {unlisted:?}"
        );
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "marked_tests_are_found_through_attributes_and_comments",
            marked_tests_are_found_through_attributes_and_comments,
        ),
        (
            "every_module_is_listed_once_and_no_list_is_empty",
            every_module_is_listed_once_and_no_list_is_empty,
        ),
    ];
}
