//! The derive macro of turbo-model. Use it through `turbo_model::ModelStream`.

use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_derive(ModelStream, attributes(stream))]
pub fn derive_model_stream(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

/// Placeholder.
#[proc_macro_attribute]
pub fn active_model_behavior(_args: TokenStream, input: TokenStream) -> TokenStream {
    input
}
