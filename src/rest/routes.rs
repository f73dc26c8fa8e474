//! The REST route table, read from the `google.api.http` options of every method in the
//! embedded descriptor set, `additional_bindings` included.

use crate::{
    pb::google::api::HttpRule,
    pb::google::api::http_rule::Pattern,
    rest::template::{self, Template},
};
use http::Method;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

/// One REST binding of an RPC.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP verb.
    pub method: Method,
    /// The path template.
    pub template: Template,
    /// The RPC.
    pub rpc: MethodDescriptor,
    /// `*`, a field name, or empty (no body).
    pub body: String,
    /// The response field sent as the body, or empty for the whole message.
    pub response_body: String,
    /// The position among the RPC's bindings (0 for the primary one).
    pub binding: usize,
}

impl Route {
    /// The gRPC path of the RPC: `/package.Service/Method`.
    pub fn grpc_path(&self) -> String {
        format!(
            "/{}/{}",
            self.rpc.parent_service().full_name(),
            self.rpc.name()
        )
    }
}

/// What a request path and verb resolve to.
#[derive(Debug)]
pub enum Found<'a> {
    /// A route, with the path variables' values.
    Route(&'a Route, Vec<(String, String)>),
    /// The path exists, but not with this verb; the verbs it has.
    WrongMethod(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Every REST binding of every RPC.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Reads the bindings of every service in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> anyhow::Result<Self> {
        let ext = pool
            .get_extension_by_name("google.api.http")
            .ok_or_else(|| anyhow::anyhow!("the descriptor set lacks google.api.http"))?;
        let mut routes = vec![];
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&ext) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&ext).into_owned() else {
                    continue;
                };
                let rule: HttpRule = rule.transcode_to()?;
                let mut bindings = vec![rule.clone()];
                bindings.extend(rule.additional_bindings.iter().cloned());
                for (i, b) in bindings.into_iter().enumerate() {
                    let (method, path) = match b.pattern {
                        Some(Pattern::Get(p)) => (Method::GET, p),
                        Some(Pattern::Put(p)) => (Method::PUT, p),
                        Some(Pattern::Post(p)) => (Method::POST, p),
                        Some(Pattern::Delete(p)) => (Method::DELETE, p),
                        Some(Pattern::Patch(p)) => (Method::PATCH, p),
                        Some(Pattern::Custom(c)) => {
                            (Method::from_bytes(c.kind.as_bytes())?, c.path)
                        }
                        None => continue,
                    };
                    let template = Template::parse(&path).map_err(|e| anyhow::anyhow!(e))?;
                    routes.push(Route {
                        method,
                        template,
                        rpc: rpc.clone(),
                        body: b.body,
                        response_body: b.response_body,
                        binding: i,
                    });
                }
            }
        }
        Ok(Self { routes })
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The most specific route (most literal segments) for `method` and `path`.
    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        let segs = template::split(path.strip_prefix('/').unwrap_or(path));
        let matches = |r: &Route| {
            if r.template.has_verb() {
                r.template.matches(path)
            } else {
                r.template.matches_segments(&segs)
            }
        };
        // The method's routes first; the others only to tell a wrong method from no route.
        for r in self.routes.iter().filter(|r| r.method == *method) {
            let Some(vars) = matches(r) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(b, _)| r.template.literal_count() > b.template.literal_count())
            {
                best = Some((r, vars));
            }
        }
        if let Some((r, vars)) = best {
            return Found::Route(r, vars);
        }
        let mut other_verbs: Vec<Method> = self
            .routes
            .iter()
            .filter(|r| r.method != *method && matches(r).is_some())
            .map(|r| r.method.clone())
            .collect();
        if other_verbs.is_empty() {
            return Found::NotFound;
        }
        other_verbs.dedup();
        Found::WrongMethod(other_verbs)
    }
}
