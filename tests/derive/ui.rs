//! UI tests of `#[derive(ModelStream)]` and `#[turbo_model::active_model_behavior]`:
//! what compiles (and behaves as documented when run), and the exact errors for what
//! does not.
//!
//! Regenerate the expected errors with `TRYBUILD=overwrite cargo test -p
//! turbo-model-derive-tests --test ui`, then read every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
