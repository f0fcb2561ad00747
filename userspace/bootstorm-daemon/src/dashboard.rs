//! The web dashboard's files, embedded: the bundle Vite built from `dashboard/` (React), served
//! by the API under `/ui/`. The build script checks that the bundle is as new as its sources
//! (and rebuilds it where the dashboard's packages are installed).

macro_rules! dist {
    ($f:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dashboard/dist/",
            $f
        ))
    };
}

/// The hash of the sources the embedded bundle was built from (`dashboard/stamp.mjs`).
pub const BUNDLE_SOURCES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dashboard/dist/SOURCES.sha256"
));

/// The hash of the dashboard's sources as they are now (computed by the build script).
pub const SOURCES: &str = env!("DASHBOARD_SOURCES_SHA256");

/// A file of the bundle: its content type and bytes.
pub fn file(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "index.html" => ("text/html; charset=utf-8", dist!("index.html")),
        "app.js" => ("text/javascript; charset=utf-8", dist!("app.js")),
        "app.css" => ("text/css; charset=utf-8", dist!("app.css")),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_bundle_was_built_from_the_sources_as_they_are() {
        assert_eq!(
            super::BUNDLE_SOURCES.trim(),
            super::SOURCES,
            "dashboard/dist is older than dashboard/src: run `npm ci && npm run build` in dashboard/ and commit dist/"
        );
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        let (_, page) = super::file("index.html").unwrap();
        let page = String::from_utf8_lossy(page);
        for f in ["./app.js", "./app.css"] {
            assert!(page.contains(f), "{page}");
            assert!(super::file(&f[2..]).is_some_and(|(_, b)| !b.is_empty()));
        }
        assert!(super::file("../Cargo.toml").is_none());
    }
}
