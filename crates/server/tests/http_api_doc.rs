//! `docs/http-api.md` is the OpenAPI document rendered as Markdown; this test fails
//! when the two disagree. Regenerate with
//! `SUNDIAL_UPDATE_DOCS=1 cargo test -p sundial-server --test http_api_doc`.

use std::fmt::Write as _;

use serde_json::Value;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(types) = schema.get("type") {
        let t = match types {
            Value::Array(list) => list
                .iter()
                .map(|t| text(t).to_owned())
                .collect::<Vec<_>>()
                .join(" \\| "),
            other => text(other).to_owned(),
        };
        if let Some(items) = schema.get("items") {
            return format!("{t} of {}", type_of(items));
        }
        return t;
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(list)) = schema.get(key) {
            return list.iter().map(type_of).collect::<Vec<_>>().join(" \\| ");
        }
    }
    "any".to_owned()
}

fn render(doc: &Value) -> String {
    let mut out = String::new();
    let info = &doc["info"];
    let _ = writeln!(out, "# {}\n", text(&info["title"]));
    let _ = writeln!(
        out,
        "<!-- Generated from the OpenAPI document (`GET /api/openapi.json`) by \
         crates/server/tests/http_api_doc.rs; do not edit by hand. -->\n"
    );
    let _ = writeln!(out, "{}\n", text(&info["description"]));
    let _ = writeln!(
        out,
        "The machine-readable document is served by `sundial serve` at \
         `GET /api/openapi.json` (OpenAPI {}).\n",
        text(&doc["openapi"])
    );
    let _ = writeln!(out, "## Routes\n");
    let _ = writeln!(out, "| method | path | what |\n|---|---|---|");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let _ = writeln!(
                out,
                "| {} | `{path}` | {} |",
                method.to_uppercase(),
                one_line(text(&op["summary"]))
            );
        }
    }
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let _ = writeln!(out, "\n## {} `{path}`\n", method.to_uppercase());
            let _ = writeln!(out, "{}\n", one_line(text(&op["summary"])));
            if let Some(Value::Array(params)) = op.get("parameters") {
                let _ = writeln!(out, "| parameter | in | required | type | description |");
                let _ = writeln!(out, "|---|---|---|---|---|");
                for p in params {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | {} | {} | {} |",
                        text(&p["name"]),
                        text(&p["in"]),
                        if p["required"].as_bool().unwrap_or(false) {
                            "yes"
                        } else {
                            "no"
                        },
                        type_of(&p["schema"]),
                        one_line(text(&p["description"]))
                    );
                }
                out.push('\n');
            }
            if let Some(body) = op.get("requestBody") {
                for (ctype, media) in body["content"].as_object().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "Request body (`{ctype}`): {} — {}\n",
                        type_of(&media["schema"]),
                        one_line(text(&body["description"]))
                    );
                }
            }
            let _ = writeln!(out, "| status | answer |\n|---|---|");
            for (status, resp) in op["responses"].as_object().into_iter().flatten() {
                let body = resp["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .map(|m| format!(" — {}", type_of(&m["schema"])))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {status} | {}{body} |",
                    one_line(text(&resp["description"]))
                );
            }
        }
    }
    let _ = writeln!(out, "\n## Schemas");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "\n### {name}\n");
        if let Some(d) = schema.get("description") {
            let _ = writeln!(out, "{}\n", one_line(text(d)));
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().map(text).collect())
            .unwrap_or_default();
        if let Some(props) = schema["properties"].as_object() {
            let _ = writeln!(
                out,
                "| field | type | required | description |\n|---|---|---|---|"
            );
            for (field, p) in props {
                let _ = writeln!(
                    out,
                    "| `{field}` | {} | {} | {} |",
                    type_of(p),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    one_line(text(&p["description"]))
                );
            }
        }
    }
    out
}

#[test]
fn docs_http_api_md_is_the_rendered_openapi_document() {
    let doc = serde_json::to_value(sundial_server::openapi_document()).expect("json");
    let rendered = render(&doc);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/http-api.md");
    if std::env::var_os("SUNDIAL_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/http-api.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/http-api.md is out of date: run \
         `SUNDIAL_UPDATE_DOCS=1 cargo test -p sundial-server --test http_api_doc`"
    );
}
