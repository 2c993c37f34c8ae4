//! Model listings (`ListModels`, `LoadModel`'s answer): every model under the roots and every id the
//! requirements table knows, with what it needs and, when loaded, its cache record.

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
    /// Why `requirements` is `None`: the refusal of its folder (a checkpoint that is corrupt, over a
    /// loader limit or not served names the file and the reason), so one bad folder is listed
    /// rather than failing the listing.
    pub error: Option<String>,
}

impl Handle {
    /// Every model under the roots and in the requirements table, sorted by id.
    pub async fn models(&self) -> Result<Vec<ModelListing>, Error> {
        let settings = self.settings();
        let cached = self.cached().await?;
        let weights = |m: &model_id::ResolvedModel| Layout::detect(&m.dir).is_some();
        let mut ids: Vec<(String, Option<PathBuf>)> = model_id::list(&settings.roots)
            .into_iter()
            .map(|m| (m.id.clone(), weights(&m).then_some(m.root)))
            .collect();
        for (id, _) in settings.registry.entries() {
            if !ids.iter().any(|(i, _)| i == id) {
                ids.push((id.to_string(), None));
            }
        }
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for (id, root) in ids {
            let question = FitQuestion {
                model: id.clone(),
                batch: 1,
                duration_s: LISTING_DURATION_S,
                device: Device::Cpu.into(),
                dtype: DType::default(),
                audio_prompt_s: 0.0,
            };
            let (requirements, error) = match self.requirements(&question).await {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e.to_string())),
            };
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
