//! Directory settings: `/groupSettings` (v1.0), `/settings` (beta) and the setting templates,
//! of which `Group.Unified` carries `NewUnifiedGroupWritebackDefault`.

use crate::collection::GROUP_UNIFIED_TEMPLATE;
use crate::error::{GraphError, GraphResult};
use crate::request::{json_object, Ctx};
use crate::schema::ApiVersion;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn finish(result: GraphResult<Response>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// (name, type, default) of the `Group.Unified` template's values.
const GROUP_UNIFIED_VALUES: &[(&str, &str, &str)] = &[
    ("CustomBlockedWordsList", "System.String", ""),
    ("EnableMSStandardBlockedWords", "System.Boolean", "false"),
    ("ClassificationDescriptions", "System.String", ""),
    ("DefaultClassification", "System.String", ""),
    ("PrefixSuffixNamingRequirement", "System.String", ""),
    ("AllowGuestsToBeGroupOwner", "System.Boolean", "false"),
    ("AllowGuestsToAccessGroups", "System.Boolean", "true"),
    ("GuestUsageGuidelinesUrl", "System.String", ""),
    ("GroupCreationAllowedGroupId", "System.Guid", ""),
    ("AllowToAddGuests", "System.Boolean", "true"),
    ("UsageGuidelinesUrl", "System.String", ""),
    ("ClassificationList", "System.String", ""),
    ("EnableGroupCreation", "System.Boolean", "true"),
    ("NewUnifiedGroupWritebackDefault", "System.Boolean", "true"),
    ("EnableMIPLabels", "System.Boolean", "false"),
];

fn group_unified_template() -> Value {
    let values: Vec<Value> = GROUP_UNIFIED_VALUES
        .iter()
        .map(|(name, ty, default)| {
            json!({"name": name, "type": ty, "defaultValue": default, "description": format!("Setting {name} of Microsoft 365 groups.")})
        })
        .collect();
    json!({
        "id": GROUP_UNIFIED_TEMPLATE,
        "deletedDateTime": null,
        "displayName": "Group.Unified",
        "description": "Setting templates define the different settings that can be used for the associated ObjectSettings. This template defines settings that can be used for Unified Groups.",
        "values": values,
    })
}

fn settings_collection(ctx: &Ctx) -> &'static str {
    match ctx.version {
        ApiVersion::V1 => "groupSettings",
        ApiVersion::Beta => "settings",
    }
}

/// `GET /groupSettingTemplates` and `GET /groupSettingTemplates/{id}`.
pub async fn templates(Path(params): Path<Vec<(String, String)>>, headers: HeaderMap) -> Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let version = get("version").unwrap_or_default();
    finish(Ctx::new(&version, &headers, None).map(|ctx| {
        match get("id") {
            None => axum::Json(json!({
                "@odata.context": ctx.context("groupSettingTemplates"),
                "value": [group_unified_template()],
            }))
            .into_response(),
            Some(id) if id == GROUP_UNIFIED_TEMPLATE => {
                let mut body = Map::new();
                body.insert(
                    "@odata.context".into(),
                    json!(ctx.context("groupSettingTemplates/$entity")),
                );
                if let Value::Object(t) = group_unified_template() {
                    body.extend(t);
                }
                axum::Json(Value::Object(body)).into_response()
            }
            Some(id) => GraphError::not_found(&id).into_response(),
        }
    }))
}

fn check_values(values: &Value) -> GraphResult<Vec<(String, String)>> {
    let Some(items) = values.as_array() else {
        return Err(GraphError::bad_request(
            "Property 'values' must be an array of settingValue.",
        ));
    };
    items
        .iter()
        .map(|v| {
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
            let value = v.get("value").and_then(Value::as_str);
            match (
                GROUP_UNIFIED_VALUES.iter().any(|(n, _, _)| *n == name),
                value,
            ) {
                (true, Some(value)) => Ok((name.to_string(), value.to_string())),
                _ => Err(GraphError::bad_request(format!(
                    "Invalid value specified for setting '{name}' of template 'Group.Unified'."
                ))),
            }
        })
        .collect()
}

fn list(app: &AppState, ctx: &Ctx) -> Response {
    let tenant = app.read_tenant();
    let value: Vec<Value> = tenant.settings.values().cloned().collect();
    axum::Json(json!({"@odata.context": ctx.context(settings_collection(ctx)), "value": value}))
        .into_response()
}

fn create(app: &AppState, ctx: &Ctx, body: &[u8]) -> GraphResult<Response> {
    let body = json_object(body)?;
    for name in body.keys() {
        if !matches!(
            name.as_str(),
            "templateId" | "values" | "displayName" | "@odata.type"
        ) {
            return Err(GraphError::unknown_property(
                name,
                "microsoft.graph.groupSetting",
            ));
        }
    }
    let template = body
        .get("templateId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if template != GROUP_UNIFIED_TEMPLATE {
        return Err(GraphError::not_found(template));
    }
    let given = check_values(body.get("values").unwrap_or(&json!([])))?;
    let mut tenant = app.write_tenant();
    if tenant.setting_for_template(template).is_some() {
        return Err(GraphError::bad_request(
            "A conflicting object with one or more of the specified property values is present in the directory.",
        ));
    }
    let values: Vec<Value> = GROUP_UNIFIED_VALUES
        .iter()
        .map(|(name, _, default)| {
            let value = given
                .iter()
                .find(|(n, _)| n == name)
                .map_or(*default, |(_, v)| v.as_str());
            json!({"name": name, "value": value})
        })
        .collect();
    let id = uuid::Uuid::new_v4().to_string();
    let setting =
        json!({"id": id, "displayName": "Group.Unified", "templateId": template, "values": values});
    tenant.settings.insert(id, setting.clone());
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(ctx.context(&format!("{}/$entity", settings_collection(ctx)))),
    );
    if let Value::Object(s) = setting {
        out.extend(s);
    }
    Ok((StatusCode::CREATED, axum::Json(Value::Object(out))).into_response())
}

fn update(app: &AppState, id: &str, body: &[u8]) -> GraphResult<Response> {
    let body = json_object(body)?;
    for name in body.keys() {
        if name != "values" {
            return Err(GraphError::read_only(name));
        }
    }
    let given = check_values(body.get("values").unwrap_or(&json!([])))?;
    let mut tenant = app.write_tenant();
    let setting = tenant
        .settings
        .get_mut(id)
        .ok_or_else(|| GraphError::not_found(id))?;
    if let Some(values) = setting.get_mut("values").and_then(Value::as_array_mut) {
        for (name, value) in given {
            match values
                .iter_mut()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(&name))
            {
                Some(v) => v["value"] = json!(value),
                None => values.push(json!({"name": name, "value": value})),
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn check_version(ctx: &Ctx, beta_only: bool) -> GraphResult<()> {
    if beta_only && ctx.version != ApiVersion::Beta {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment 'settings'.",
        ));
    }
    Ok(())
}

/// `/groupSettings` (both versions) and `/settings` (beta): list and create.
pub async fn collection(
    State(app): State<Arc<AppState>>,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    let seg = uri.path().split('/').nth(2).unwrap_or_default().to_string();
    finish(Ctx::new(&v, &headers, q.as_deref()).and_then(|ctx| {
        check_version(&ctx, seg == "settings")?;
        if method == axum::http::Method::POST {
            create(&app, &ctx, &body)
        } else {
            Ok(list(&app, &ctx))
        }
    }))
}

/// `/groupSettings/{id}` and `/settings/{id}`: get, update, delete.
pub async fn item(
    State(app): State<Arc<AppState>>,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    let seg = uri.path().split('/').nth(2).unwrap_or_default().to_string();
    finish(Ctx::new(&v, &headers, None).and_then(|ctx| {
        check_version(&ctx, seg == "settings")?;
        match method {
            axum::http::Method::PATCH => update(&app, &id, &body),
            axum::http::Method::DELETE => {
                app.write_tenant()
                    .settings
                    .remove(&id)
                    .ok_or_else(|| GraphError::not_found(&id))?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => {
                let tenant = app.read_tenant();
                let s = tenant
                    .settings
                    .get(&id)
                    .ok_or_else(|| GraphError::not_found(&id))?;
                let mut out = Map::new();
                out.insert(
                    "@odata.context".into(),
                    json!(ctx.context(&format!("{}/$entity", settings_collection(&ctx)))),
                );
                if let Value::Object(s) = s {
                    out.extend(s.clone());
                }
                Ok(axum::Json(Value::Object(out)).into_response())
            }
        }
    }))
}
