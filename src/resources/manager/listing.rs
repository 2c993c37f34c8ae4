//! Model listings (`ListModels`, `LoadModel`'s answer): every model under the roots and in the hub
//! cache, and every id the requirements table knows, with what it needs and, when loaded, its cache
//! record. A folder that cannot be loaded (incomplete, an unknown revision, a link leaving its root)
//! is listed as absent with the reason, even when the table can still size its id.

use std::path::PathBuf;

use super::{FitQuestion, Handle};
use crate::{
    checkpoint::Layout,
    error::Error,
    resources::{
        cache::CachedModel,
        device::Device,
        model_id,
        requirements::{DType, Requirements},
    },
};

/// Seconds of audio a listing's requirements are worked out for: what the CLI's `validate` and
/// `batch-size` ask about by default, so a listing and those answers agree.
pub const LISTING_DURATION_S: f64 = 10.0;

/// One model as a listing shows it.
#[derive(Debug, Clone)]
pub struct ModelListing {
    /// Model id.
    pub id: String,
    /// The model root holding its weights; `None` when only the requirements table knows it or its
    /// folder holds no weights in any layout.
    pub root: Option<PathBuf>,
    /// What one sample of [`LISTING_DURATION_S`] needs in the default dtype on the CPU, when it can
    /// be worked out.
    pub requirements: Option<Requirements>,
    /// Its cache record, when loaded.
    pub cached: Option<CachedModel>,
    /// Why `requirements` is `None`, or why its folder cannot be loaded: the refusal of its folder (a
    /// checkpoint that is corrupt, over a loader limit or not served names the file and the reason;
    /// an incomplete one names what it lacks), so one bad folder is listed rather than failing the
    /// listing.
    pub error: Option<String>,
}

/// `(id, root, why it cannot load)` for a listed folder: its root when it resolves and holds weights
/// (so the weights are present), the resolution's refusal otherwise.
fn found(
    model: model_id::ResolvedModel,
    roots: &model_id::ModelRoots,
) -> (String, Option<PathBuf>, Option<String>) {
    match model_id::resolve(&model.id, roots) {
        Ok(m) => {
            let root = Layout::detect(&m.dir).is_some().then_some(m.root);
            (model.id, root, None)
        }
        Err(e) => (model.id, None, Some(e.to_string())),
    }
}

impl Handle {
    /// Every model under the roots and in the requirements table, sorted by id.
    pub async fn models(&self) -> Result<Vec<ModelListing>, Error> {
        let settings = self.settings();
        let cached = self.cached().await?;
        let roots = settings.roots.clone();
        let mut ids: Vec<(String, Option<PathBuf>, Option<String>)> = self
            .on_disk("listing the model roots", move || {
                model_id::list(&roots).into_iter().map(|m| found(m, &roots)).collect()
            })
            .await?;
        for (id, _) in settings.registry.entries() {
            if !ids.iter().any(|(i, _, _)| i == id) {
                ids.push((id.to_string(), None, None));
            }
        }
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for (id, root, unloadable) in ids {
            let question = FitQuestion {
                model: id.clone(),
                batch: 1,
                duration_s: LISTING_DURATION_S,
                device: Device::Cpu.into(),
                dtype: DType::default(),
                audio_prompt_s: 0.0,
                conversion_bytes: 0,
            };
            let (requirements, error) = match self.requirements(&question).await {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let error = unloadable.or(error);
            let cached = cached.iter().find(|c| c.model == id).cloned();
            out.push(ModelListing { id, root, requirements, cached, error });
        }
        Ok(out)
    }

    /// The listing of `model`; NOT_FOUND when no root or table row has it.
    pub async fn listing(&self, model: &str) -> Result<ModelListing, Error> {
        let found = self.models().await?.into_iter().find(|m| m.id == model);
        found
            .ok_or_else(|| Error::NotFound(format!("model {model} is in no model root and not in the table")))
    }
}
