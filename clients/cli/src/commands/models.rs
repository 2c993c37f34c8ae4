//! `models`, `load` and `unload`: the model catalogue and cache of the GenerationService.

use maestro_proto as pb;

use super::Output;
use crate::{
    args::{LoadArgs, UnloadArgs},
    client::Clients,
    table::Table,
    units::{self, bytes},
    Failure,
};

/// `models`.
pub async fn list(c: &mut Clients, out: Output) -> Result<(), Failure> {
    let list = c.generation.list_models(pb::ListModelsRequest {}).await?.into_inner();
    out.show(&list, "ModelList", |l| model_table(&l.models).unwrap_or_else(|| "no models\n".into()))?;
    Ok(())
}

/// Models as a table, or `None` when there are none.
pub fn model_table(models: &[pb::ModelInfo]) -> Option<String> {
    if models.is_empty() {
        return None;
    }
    let mut t =
        Table::new(&["MODEL", "WEIGHTS", "LOADED", "DEVICE", "DTYPE", "SIZE", "IN FLIGHT", "PINNED", "ROOT"])
            .right(&[5, 6]);
    for m in models {
        let size = if m.loaded { m.bytes } else { m.requirements.as_ref().map_or(0, |r| r.weights_bytes) };
        t.row(vec![
            m.model.clone(),
            if m.weights_present { "present".into() } else { "absent".into() },
            units::yes_no(m.loaded).into(),
            dash(&m.device),
            dash(&m.dtype),
            bytes(size),
            m.in_flight.to_string(),
            units::yes_no(m.pinned).into(),
            dash(&m.root),
        ]);
    }
    Some(t.render())
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

/// `load`.
pub async fn load(c: &mut Clients, out: Output, a: LoadArgs) -> Result<(), Failure> {
    let req = pb::LoadModelRequest { model: a.model, device: a.device, dtype: a.dtype, pin: a.pin };
    let info = c.generation.load_model(req).await?.into_inner();
    out.show(&info, "ModelInfo", |m| {
        let pinned = if m.pinned { ", pinned" } else { "" };
        format!("loaded {} on {} ({}, {}{pinned})\n", m.model, m.device, m.dtype, bytes(m.bytes))
    })?;
    Ok(())
}

/// `unload`.
pub async fn unload(c: &mut Clients, out: Output, a: UnloadArgs) -> Result<(), Failure> {
    let req = pb::UnloadModelRequest { model: a.model, force: a.force };
    let r = c.generation.unload_model(req).await?.into_inner();
    out.show(&r, "UnloadModelResponse", |r| {
        if r.unloaded {
            format!("unloaded {}, freed {}\n", r.model, bytes(r.bytes_freed))
        } else {
            format!("{} was not loaded\n", r.model)
        }
    })?;
    Ok(())
}
