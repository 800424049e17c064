use turbo_model::ModelStream;

#[derive(ModelStream)]
pub struct Model(i32, String);

#[derive(ModelStream)]
pub struct Unit;

fn main() {}
