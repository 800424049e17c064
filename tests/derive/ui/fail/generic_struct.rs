use turbo_model::ModelStream;

#[derive(ModelStream)]
pub struct Model<T> {
    pub id: T,
}

fn main() {}
