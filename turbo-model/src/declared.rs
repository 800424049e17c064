//! Declarative broadcasts: what `#[stream(broadcasts_to = parent, ...)]` and
//! `#[stream(broadcasts)]` on the derive do, with no hook to write.
//!
//! | The row was | Action                                   | Stream (`broadcasts_to`) | Stream (`broadcasts`) |
//! |-------------|------------------------------------------|--------------------------|-----------------------|
//! | created     | `append` (or `prepend`) to `target`      | the parent's             | the entity's (`message`) |
//! | updated     | `replace` the element [`dom_id`](crate::dom_id) | the parent's      | the row's (`message:12`) |
//! | deleted     | `remove` the element `dom_id`            | the parent's             | the row's             |
//!
//! The template renders one row; it gets it as `row` and under the name of the entity's
//! module (`message` for `entities::message`), and must give its outer element the id
//! `{{ message | dom_id }}` so that updates and deletes find it. The broadcasts are
//! made by a synchronous [`Hook`](crate::Hook): they wait for the COMMIT of the
//! transaction that wrote the row, and a failure is handled like any hook's.

use serde::Serialize;

use crate::action::Action;
use crate::broadcast::Stream;
use crate::error::{Error, Result};
use crate::model::StreamModel;

/// What the derive's attributes declared. Built by `#[derive(ModelStream)]`; not for use
/// by hand.
#[doc(hidden)]
#[derive(Debug)]
pub struct Declared {
    /// The template that renders one row.
    pub template: &'static str,
    /// The id of the element created rows go into.
    pub target: &'static str,
    /// Whether created rows are prepended rather than appended.
    pub prepend: bool,
    /// `module_path!()` where the entity was derived: its last segment names the row in
    /// the template.
    pub module: &'static str,
}

impl Declared {
    /// The context the template gets: the row as `row` and under its module's name.
    fn context<M: Serialize>(&self, row: &M) -> Result<tera::Context> {
        let value = tera::Value::from_serializable(row);
        if value.as_map().is_none() {
            return Err(Error::other(format!(
                "the row for `{}` did not serialize to a map",
                self.template
            )));
        }
        let mut context = tera::Context::new();
        let name = self.module.rsplit("::").next().unwrap_or(self.module);
        context.insert_value(name.to_owned(), value.clone());
        context.insert_value("row", value);
        Ok(context)
    }

    /// After a save: `created` rows go into `target` on `inserts`; updated ones replace
    /// their element on `changes`. `None` streams (an optional parent that is unset)
    /// send nothing.
    ///
    /// # Errors
    ///
    /// Rendering and sending errors, as [`Broadcast::send`](crate::Broadcast::send).
    pub fn saved<M: StreamModel + Serialize>(
        &self,
        row: &M,
        created: bool,
        inserts: Option<Stream>,
        changes: Option<Stream>,
    ) -> Result<()> {
        let (stream, action) = match (created, self.prepend) {
            (true, false) => (inserts, Action::Append),
            (true, true) => (inserts, Action::Prepend),
            (false, _) => (changes, Action::Replace),
        };
        let Some(stream) = stream else {
            return Ok(());
        };
        let content = crate::Content::template(self.template, self.context(row)?);
        let broadcast = stream.action(action, Some(content));
        if created {
            broadcast.target(self.target).send()
        } else {
            broadcast.target(row.dom_id()).send()
        }
    }

    /// After a delete: removes the row's element on `changes`.
    ///
    /// # Errors
    ///
    /// As [`saved`](Self::saved).
    pub fn deleted<M: StreamModel>(&self, row: &M, changes: Option<Stream>) -> Result<()> {
        match changes {
            Some(stream) => stream.remove().target(row.dom_id()).send(),
            None => Ok(()),
        }
    }
}
