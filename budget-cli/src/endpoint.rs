//! Where the CLI finds the API. `--url` (or `BUDGET_URL`) when given; otherwise where `budget start`
//! listens in the same shell, `BUDGET_HOST`/`BUDGET_PORT`: the guide's troubleshooting checks
//! `$BUDGET_PORT`, and a shell that exported it to start the service on 8019 was told "cannot reach
//! Budget at http://127.0.0.1:8013".

/// The API's base URL, and the variable it was built from when it was not given whole.
#[derive(Debug, PartialEq)]
pub struct Endpoint {
    pub url: String,
    /// Named in the "cannot reach" error, so that a stale export is found at once.
    pub from: Option<&'static str>,
}

pub const DEFAULT_URL: &str = "http://127.0.0.1:8013";

/// The endpoint for `url` as given (if any), reading the service's variables through `var`.
pub fn resolve(url: Option<String>, var: impl Fn(&str) -> Option<String>) -> Result<Endpoint, String> {
    if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
        return Ok(Endpoint { url: url.trim().to_string(), from: None });
    }
    let var = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let Some(port) = var("BUDGET_PORT") else { return Ok(Endpoint { url: DEFAULT_URL.into(), from: None }) };
    let port: u16 = match port.parse() {
        Ok(0) => {
            return Err("BUDGET_PORT=0 lets `budget start` pick a free port; set BUDGET_URL (or --url) to the \
                        address it printed"
                .into())
        }
        Ok(p) => p,
        Err(_) => {
            return Err(format!("BUDGET_PORT={port:?} is not a port: use a number from 1 to 65535, or set BUDGET_URL"))
        }
    };
    // A service listening on every interface is reached on the loopback one.
    let host = match var("BUDGET_HOST") {
        None => "127.0.0.1".to_string(),
        Some(h) if h == "0.0.0.0" => "127.0.0.1".to_string(),
        Some(h) if h == "::" || h == "[::]" => "[::1]".to_string(),
        Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        Some(h) => h,
    };
    Ok(Endpoint { url: format!("http://{host}:{port}"), from: Some("BUDGET_PORT") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(url: Option<&str>, vars: &[(&str, &str)]) -> Result<Endpoint, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(url.map(String::from), move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn url(e: Result<Endpoint, String>) -> String {
        e.unwrap().url
    }

    #[test]
    fn the_url_given_wins_then_budget_port_then_the_default() {
        assert_eq!(with(None, &[]).unwrap(), Endpoint { url: DEFAULT_URL.into(), from: None });
        assert_eq!(url(with(Some("https://b.example"), &[("BUDGET_PORT", "9000")])), "https://b.example");
        assert_eq!(
            with(None, &[("BUDGET_PORT", " 9000 ")]).unwrap(),
            Endpoint { url: "http://127.0.0.1:9000".into(), from: Some("BUDGET_PORT") }
        );
        // BUDGET_HOST alone moves nothing: the service's default port is the CLI's default URL's.
        assert_eq!(url(with(None, &[("BUDGET_HOST", "10.0.0.5")])), DEFAULT_URL);
        assert_eq!(url(with(Some(" "), &[])), DEFAULT_URL);
    }

    #[test]
    fn a_service_on_every_interface_is_reached_on_loopback() {
        let at = |host: &str| url(with(None, &[("BUDGET_PORT", "9000"), ("BUDGET_HOST", host)]));
        assert_eq!(at("0.0.0.0"), "http://127.0.0.1:9000");
        assert_eq!(at("::"), "http://[::1]:9000");
        assert_eq!(at("::1"), "http://[::1]:9000");
        assert_eq!(at("budget.internal"), "http://budget.internal:9000");
    }

    #[test]
    fn a_port_the_cli_cannot_use_is_refused_with_the_fix() {
        let e = with(None, &[("BUDGET_PORT", "80a")]).unwrap_err();
        assert!(e.contains("BUDGET_PORT=\"80a\" is not a port") && e.contains("BUDGET_URL"), "{e}");
        let e = with(None, &[("BUDGET_PORT", "0")]).unwrap_err();
        assert!(e.contains("pick a free port") && e.contains("BUDGET_URL"), "{e}");
    }
}
