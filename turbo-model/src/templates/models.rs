//! How the `turbo_subscribe` tag recognises a model in template data: a description of
//! each entity that derives `ModelStream`, submitted by the derive.

use std::collections::BTreeSet;

/// How the `turbo_subscribe` tag recognises a model in template data. Submitted by
/// `#[derive(ModelStream)]`; not for use by hand.
#[doc(hidden)]
#[derive(Debug)]
pub struct EntityInfo {
    /// The entity's stream prefix.
    pub prefix: fn() -> &'static str,
    /// `module_path!()` where the entity was derived, e.g. `chat::entities::room`.
    pub module: &'static str,
    /// Serialized names of the primary key fields, in key order.
    pub primary_key: &'static [&'static str],
    /// Serialized names of all fields.
    pub fields: &'static [&'static str],
}

inventory::collect!(EntityInfo);

impl EntityInfo {
    /// The last segment of the module path: `room` for `chat::entities::room`.
    pub(crate) fn module_name(&self) -> &'static str {
        self.module.rsplit("::").next().unwrap_or(self.module)
    }

    /// Whether a serialized row with `keys` has exactly this entity's fields.
    pub(crate) fn has_shape(&self, keys: &BTreeSet<&str>) -> bool {
        self.fields.len() == keys.len() && self.fields.iter().all(|f| keys.contains(f))
    }

    /// Whether a serialized row with `keys` holds this entity's whole primary key.
    pub(crate) fn has_key(&self, keys: &BTreeSet<&str>) -> bool {
        self.primary_key.iter().all(|f| keys.contains(f))
    }

    /// Whether `name` (the last segment of a template expression) names this entity.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        name == (self.prefix)() || name == self.module_name()
    }
}

/// Every entity that derives `ModelStream` and is linked into this program.
pub(crate) fn entities() -> impl Iterator<Item = &'static EntityInfo> {
    inventory::iter::<EntityInfo>.into_iter()
}
