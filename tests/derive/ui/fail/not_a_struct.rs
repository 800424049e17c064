use turbo_model::ModelStream;

#[derive(ModelStream)]
pub enum Model {
    Draft,
    Published,
}

#[derive(ModelStream)]
pub union Bits {
    int: u32,
    float: f32,
}

fn main() {}
