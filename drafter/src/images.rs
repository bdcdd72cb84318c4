//! Images and versions the install scripts take: on a cloud server the taskservs are installed
//! over SSH from the OS's own packages, so the draft picks an image whose OS the scripts support
//! (the provider's default when it does) and names the version that OS packages. A taskserv
//! without install scripts is drafted anyway, with a warning: this build plans and prices such a
//! server but cannot finish it.

use knowledge::{Fit, Image, TaskservMeta};

use super::render::Server;
use super::{Ctx, Notes, quote_list};

/// Fits every cloud server of the draft (see the module doc).
pub(crate) fn fit(servers: &mut [Server], ctx: &Ctx, notes: &mut Notes) {
    for s in servers {
        let Some(p) = ctx.catalog.provider(&s.provider) else {
            continue;
        };
        if p.images.is_empty() || !p.apply || !p.taskservs || s.taskservs.is_empty() {
            continue;
        }
        let mut scripted: Vec<(usize, TaskservMeta)> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        for (k, (name, _)) in s.taskservs.iter().enumerate() {
            match knowledge::taskserv_scripts(name) {
                Ok(Some(scripts)) => scripted.push((k, scripts.meta)),
                _ => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            notes.warn(format!(
                "this build has no install scripts for {} yet: the draft plans and prices `{}` servers with {}, but applying fails at {} install (the `sim` provider rehearses it)",
                quote_list(&missing),
                s.provider,
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "its" } else { "their" },
            ));
            continue;
        }
        // The default image first, then the catalog's others.
        let default = p.default_image.as_deref().unwrap_or_default();
        let mut images: Vec<(&str, &Image)> =
            p.images.iter().map(|(n, i)| (n.as_str(), i)).collect();
        images.sort_by_key(|(n, _)| *n != default);
        let asked = |k: usize| s.taskservs[k].1.as_deref();
        // Whether `image` takes the taskserv: its OS, and the asked version where it is kept.
        let fits = |k: usize, meta: &TaskservMeta, image: &Image, keep_asked: bool| match asked(k) {
            Some(v) if keep_asked => meta.fit(v, &image.os) == Fit::Yes,
            _ => meta.os.contains(&image.os),
        };
        let takes = |image: &Image, keep_asked: bool| {
            scripted
                .iter()
                .all(|(k, meta)| fits(*k, meta, image, keep_asked))
        };
        let Some(&(name, image)) = images
            .iter()
            .find(|(_, i)| takes(i, true))
            .or_else(|| images.iter().find(|(_, i)| takes(i, false)))
        else {
            notes.warn(format!(
                "no `{}` image has an OS the install scripts of {} all support",
                s.provider,
                quote_list(
                    &s.taskservs
                        .iter()
                        .map(|(n, _)| n.clone())
                        .collect::<Vec<_>>()
                )
            ));
            continue;
        };
        if name != default {
            let why: Vec<String> = scripted
                .iter()
                .filter(|(k, meta)| {
                    p.images
                        .get(default)
                        .is_none_or(|d| !fits(*k, meta, d, true))
                })
                .map(|(k, _)| format!("`{}`", s.taskservs[*k].0))
                .collect();
            notes.assume(
                "image",
                name,
                format!(
                    "the `{}` default `{default}` does not take {} as the install scripts install it (the OS's packages)",
                    s.provider,
                    why.join(", ")
                ),
            );
            s.image = Some(name.to_owned());
        }
        for (k, meta) in &scripted {
            let Some(packaged) = meta.packaged.get(&image.os) else {
                continue;
            };
            let (tname, version) = &mut s.taskservs[*k];
            match version.as_deref() {
                Some(v) if v == packaged => {}
                Some(v) => {
                    notes.warn(format!(
                        "no `{}` image packages `{tname}` {v}; the draft names {packaged}, what {} packages (the install scripts use the OS's packages)",
                        s.provider, image.os
                    ));
                    *version = Some(packaged.clone());
                }
                None => {
                    let default = ctx
                        .catalog
                        .taskserv(tname)
                        .map(|t| t.default_version.as_str());
                    if default != Some(packaged.as_str()) {
                        notes.assume(
                            &format!("{tname}.version"),
                            packaged,
                            format!(
                                "what {} packages; the install scripts use the OS's packages",
                                image.os
                            ),
                        );
                        *version = Some(packaged.clone());
                    }
                }
            }
        }
    }
}
