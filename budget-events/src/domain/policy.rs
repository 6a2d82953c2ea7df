//! Budgets' policies: what they limit (type, period, scope, limits) and the windows they count in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::names::{Component, Model, Provider, TaskType, UserId};

/// Declares a string enum with its wire names and a parse error that lists them.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
                $(if wanted == $wire { return Ok($name::$variant); })+
                let names: Vec<&str> = vec![$($wire),+];
                Err(format!("`{s}` is not a {}; use one of: {}", $what, names.join(", ")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// How a policy is enforced.
    PolicyType, "policy type" {
        Ignore = "ignore",
        Warn = "warn",
        SoftLimit = "soft_limit",
        HardLimit = "hard_limit",
    }
);

wire_enum!(
    /// The window a policy counts in.
    PolicyPeriod, "period" {
        Hourly = "hourly",
        Daily = "daily",
        Weekly = "weekly",
        Monthly = "monthly",
        PerSession = "per_session",
        PerTask = "per_task",
    }
);

wire_enum!(
    /// How heavy a model is: where it runs and roughly what it costs.
    Tier, "tier" {
        LocalLightweight = "local_lightweight",
        LocalMidweight = "local_midweight",
        RemoteHeavyweight = "remote_heavyweight",
    }
);

/// Providers whose models run locally (tier `local_*`), by our names and LiteLLM's (`ollama_chat`,
/// `lm_studio`, `hosted_vllm`, …); everything else is hosted.
const LOCAL_PROVIDERS: &[&str] = &[
    "ollama",
    "ollama_chat",
    "local",
    "lmstudio",
    "lm_studio",
    "llamacpp",
    "llama.cpp",
    "llamafile",
    "lemonade",
    "vllm",
    "hosted_vllm",
    "localai",
];
/// Size markers of local models big enough to be `local_midweight`.
const MIDWEIGHT_MARKERS: &[&str] = &["13b", "14b", "22b", "27b", "30b", "32b", "33b", "34b", "70b", "72b", "mixtral"];

impl Tier {
    /// The tier of a call when the client did not say: local providers are local tiers (midweight
    /// from ~13B parameters up), hosted providers are `remote_heavyweight`.
    pub fn derive(provider: &str, model: &str) -> Tier {
        let provider = provider.to_ascii_lowercase();
        if !LOCAL_PROVIDERS.contains(&provider.as_str()) {
            return Tier::RemoteHeavyweight;
        }
        let model = model.to_ascii_lowercase();
        if MIDWEIGHT_MARKERS.iter().any(|m| model.contains(m)) {
            Tier::LocalMidweight
        } else {
            Tier::LocalLightweight
        }
    }
}

/// Which usage a policy counts: each set field must equal the record's; an absent field matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<TaskType>,
    /// The end user (`user_id` of records and allocations): a per-user limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
}

/// The fields of a call that scopes and windows look at.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub component: &'a str,
    pub tier: Tier,
    pub task_type: &'a str,
    pub session_id: Option<&'a str>,
    pub context_id: Option<&'a str>,
    /// The end user; a call without one is outside every user-scoped policy.
    pub user: Option<&'a str>,
    pub at: DateTime<Utc>,
}

impl Scope {
    pub fn matches(&self, call: &CallFacts<'_>) -> bool {
        fn eq<T: AsRef<str>>(filter: &Option<T>, value: &str) -> bool {
            filter.as_ref().is_none_or(|f| f.as_ref() == value)
        }
        eq(&self.provider.as_ref().map(Provider::as_str), call.provider)
            && self.model.as_ref().is_none_or(|m| crate::domain::price::is_model(call.provider, call.model, m.as_str()))
            && eq(&self.component.as_ref().map(Component::as_str), call.component)
            && self.tier.is_none_or(|t| t == call.tier)
            && eq(&self.task_type.as_ref().map(TaskType::as_str), call.task_type)
            && self.user.as_ref().is_none_or(|u| call.user == Some(u.as_str()))
    }

    /// `provider=openai, component=codex`, or `all usage`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.provider {
            parts.push(format!("provider={v}"));
        }
        if let Some(v) = &self.model {
            parts.push(format!("model={v}"));
        }
        if let Some(v) = &self.component {
            parts.push(format!("component={v}"));
        }
        if let Some(v) = &self.tier {
            parts.push(format!("tier={v}"));
        }
        if let Some(v) = &self.task_type {
            parts.push(format!("task_type={v}"));
        }
        if let Some(v) = &self.user {
            parts.push(format!("user={v}"));
        }
        if parts.is_empty() {
            "all usage".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One window of one policy: the key its account is stored under, and its bounds (calendar periods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub key: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Whose window a key names, in words: `task t-1` for `task:t-1`, `session s-1` for `session:s-1`;
/// none for a calendar window, whose key is its start. Messages name a per-task or per-session window
/// by it ("task t-1's window") instead of showing its key as if it were a time.
pub fn window_owner(key: &str) -> Option<String> {
    match key.split_once(':') {
        Some(("task", task)) => Some(format!("task {task}")),
        Some(("session", session)) => Some(format!("session {session}")),
        _ => None,
    }
}

impl PolicyPeriod {
    /// The window containing `call`, or `None` when the call has no session (per_session) or no task
    /// (per_task) to count in.
    pub fn window(self, tz: Tz, call: &CallFacts<'_>) -> Option<Window> {
        match self {
            PolicyPeriod::PerSession => {
                call.session_id.map(|s| Window { key: format!("session:{s}"), start: None, end: None })
            }
            PolicyPeriod::PerTask => {
                call.context_id.map(|t| Window { key: format!("task:{t}"), start: None, end: None })
            }
            calendar => Some(calendar_window_keyed(calendar, tz, call.at)),
        }
    }
}

/// The calendar window containing `at`, keyed as its account is (`2026-11-28T00:00:00Z`).
fn calendar_window_keyed(period: PolicyPeriod, tz: Tz, at: DateTime<Utc>) -> Window {
    let (start, end) = calendar_window(period, tz, at);
    Window { key: start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), start: Some(start), end: Some(end) }
}

impl Policy {
    /// The window containing `at` for a calendar policy (none for per-session and per-task ones, whose
    /// windows are sessions and tasks), with the key its account has.
    pub fn calendar_window_at(&self, at: DateTime<Utc>) -> Option<Window> {
        match self.period {
            PolicyPeriod::PerSession | PolicyPeriod::PerTask => None,
            period => Some(calendar_window_keyed(period, self.timezone, at)),
        }
    }
}

/// `[start, end)` of the hour, day, ISO week (from Monday) or month containing `at`, in `tz`.
pub fn calendar_window(period: PolicyPeriod, tz: Tz, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = at.with_timezone(&tz);
    if period == PolicyPeriod::Hourly {
        // Offsets are whole hours or half/quarter hours; the local hour starts at the same instant
        // whatever the offset does later, so subtract the local minutes and seconds.
        let start = at
            - Duration::minutes(local.minute() as i64)
            - Duration::seconds(local.second() as i64)
            - Duration::nanoseconds(local.nanosecond() as i64);
        return (start, start + Duration::hours(1));
    }
    let date = local.date_naive();
    let (first, next): (NaiveDate, NaiveDate) = match period {
        PolicyPeriod::Daily => (date, date + Duration::days(1)),
        PolicyPeriod::Weekly => {
            let monday = date - Duration::days(date.weekday().num_days_from_monday() as i64);
            (monday, monday + Duration::weeks(1))
        }
        PolicyPeriod::Monthly => {
            let first = date.with_day(1).expect("day 1 exists");
            (first, first.checked_add_months(chrono::Months::new(1)).expect("in range"))
        }
        _ => unreachable!("only calendar periods have calendar windows"),
    };
    (local_midnight(tz, first), local_midnight(tz, next))
}

/// The instant a local date starts. Where midnight does not exist (a DST gap at 00:00), the day starts
/// at the first local time that does.
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t: NaiveDateTime = date.and_hms_opt(0, 0, 0).expect("midnight");
    loop {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(d) => return d.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => t += Duration::minutes(15),
        }
    }
}

/// Parses an IANA timezone name (`UTC`, `Europe/Berlin`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| format!("`{name}` is not an IANA timezone name; use e.g. UTC, Europe/Berlin, America/New_York"))
}

/// A threshold is a fraction of the limit, from 0 to 1.
pub fn check_threshold(field: &str, value: Decimal) -> Result<Decimal, String> {
    if value <= Decimal::ZERO || value > Decimal::ONE {
        return Err(format!("{field} is {value}; it is a fraction of the limit, above 0 and at most 1 (0.8 = 80%)"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn call(at: &str) -> CallFacts<'static> {
        CallFacts {
            provider: "openai",
            model: "gpt-4o",
            component: "codex",
            tier: Tier::RemoteHeavyweight,
            task_type: "coding",
            session_id: Some("s-1"),
            context_id: None,
            user: None,
            at: t(at),
        }
    }

    #[test]
    fn calendar_windows_in_utc_cross_year_and_leap_day() {
        let w = |p, at| calendar_window(p, Tz::UTC, t(at));
        assert_eq!(
            w(PolicyPeriod::Daily, "2026-12-31T23:59:59Z"),
            (t("2026-12-31T00:00:00Z"), t("2027-01-01T00:00:00Z"))
        );
        // 2026-12-31 is a Thursday: its ISO week runs Monday 28 Dec to Monday 4 Jan.
        assert_eq!(
            w(PolicyPeriod::Weekly, "2026-12-31T12:00:00Z"),
            (t("2026-12-28T00:00:00Z"), t("2027-01-04T00:00:00Z"))
        );
        assert_eq!(w(PolicyPeriod::Weekly, "2027-01-04T00:00:00Z").0, t("2027-01-04T00:00:00Z"));
        assert_eq!(
            w(PolicyPeriod::Monthly, "2028-02-29T10:00:00Z"),
            (t("2028-02-01T00:00:00Z"), t("2028-03-01T00:00:00Z"))
        );
        assert_eq!(w(PolicyPeriod::Monthly, "2026-12-15T00:00:00Z").1, t("2027-01-01T00:00:00Z"));
        assert_eq!(
            w(PolicyPeriod::Hourly, "2026-11-28T15:42:10.5Z"),
            (t("2026-11-28T15:00:00Z"), t("2026-11-28T16:00:00Z"))
        );
    }

    #[test]
    fn windows_follow_dst_in_a_local_timezone() {
        let ny: Tz = parse_timezone("America/New_York").unwrap();
        // Spring forward on 2026-03-08: that day has 23 hours.
        let (start, end) = calendar_window(PolicyPeriod::Daily, ny, t("2026-03-08T12:00:00Z"));
        assert_eq!((start, end), (t("2026-03-08T05:00:00Z"), t("2026-03-09T04:00:00Z")));
        assert_eq!(end - start, Duration::hours(23));
        // Fall back on 2026-11-01: 25 hours.
        let (start, end) = calendar_window(PolicyPeriod::Daily, ny, t("2026-11-01T12:00:00Z"));
        assert_eq!(end - start, Duration::hours(25));
        // The repeated 01:xx hour is two distinct hourly windows.
        let first = calendar_window(PolicyPeriod::Hourly, ny, t("2026-11-01T05:30:00Z"));
        let second = calendar_window(PolicyPeriod::Hourly, ny, t("2026-11-01T06:30:00Z"));
        assert_eq!(first, (t("2026-11-01T05:00:00Z"), t("2026-11-01T06:00:00Z")));
        assert_eq!(second, (t("2026-11-01T06:00:00Z"), t("2026-11-01T07:00:00Z")));
        // India is +05:30: its hours start at :30 UTC.
        let kolkata = parse_timezone("Asia/Kolkata").unwrap();
        assert_eq!(
            calendar_window(PolicyPeriod::Hourly, kolkata, t("2026-11-28T10:10:00Z")).0,
            t("2026-11-28T09:30:00Z")
        );
        // A monthly window in Berlin starts at local midnight (UTC+1 in winter).
        let berlin = parse_timezone("Europe/Berlin").unwrap();
        assert_eq!(
            calendar_window(PolicyPeriod::Monthly, berlin, t("2026-12-01T00:30:00Z")).0,
            t("2026-11-30T23:00:00Z")
        );
    }

    #[test]
    fn session_and_task_windows_need_their_key() {
        assert_eq!(PolicyPeriod::PerSession.window(Tz::UTC, &call("2026-01-01T00:00:00Z")).unwrap().key, "session:s-1");
        assert_eq!(PolicyPeriod::PerTask.window(Tz::UTC, &call("2026-01-01T00:00:00Z")), None);
        assert_eq!(
            PolicyPeriod::Daily.window(Tz::UTC, &call("2026-01-01T05:00:00Z")).unwrap().key,
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_scope_matches_when_every_set_filter_equals() {
        let c = call("2026-01-01T00:00:00Z");
        assert!(Scope::default().matches(&c));
        let openai = Scope { provider: Some(Provider::parse("openai").unwrap()), ..Default::default() };
        assert!(openai.matches(&c));
        let both = Scope { component: Some(Component::parse("rhetor").unwrap()), ..openai.clone() };
        assert!(!both.matches(&c), "every set filter must match");
        let local = Scope { tier: Some(Tier::LocalLightweight), ..Default::default() };
        assert!(!local.matches(&c));
        assert_eq!(both.describe(), "provider=openai, component=rhetor");
    }

    #[test]
    fn tiers_are_derived_from_provider_and_model() {
        assert_eq!(Tier::derive("openai", "gpt-4o"), Tier::RemoteHeavyweight);
        assert_eq!(Tier::derive("ollama", "llama3:8b"), Tier::LocalLightweight);
        assert_eq!(Tier::derive("Ollama", "llama3:70b"), Tier::LocalMidweight);
        assert_eq!("remote-heavyweight".parse::<Tier>().unwrap(), Tier::RemoteHeavyweight);
        assert!("huge".parse::<Tier>().unwrap_err().contains("local_lightweight"));
        assert!(check_threshold("warning_threshold", Decimal::new(15, 1)).is_err());
    }
}

/// A policy as the write path decides against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: uuid::Uuid,
    pub budget_id: uuid::Uuid,
    pub policy_type: PolicyType,
    pub period: PolicyPeriod,
    pub scope: Scope,
    pub cost_limit: Option<crate::Money>,
    pub token_limit: Option<i64>,
    pub warning_threshold: Decimal,
    pub action_threshold: Decimal,
    pub enabled: bool,
    pub timezone: Tz,
}

impl Policy {
    /// The `PolicySet` that sets this policy as it is (no opening balance): [`Policy::from_event`]'s
    /// inverse, for answers that show a policy a change replaced.
    pub fn to_event(&self) -> crate::event::PolicySet {
        crate::event::PolicySet {
            policy_id: self.id,
            budget_id: self.budget_id,
            policy_type: self.policy_type,
            period: self.period,
            scope: self.scope.clone(),
            cost_limit: self.cost_limit,
            token_limit: self.token_limit,
            warning_threshold: self.warning_threshold,
            action_threshold: self.action_threshold,
            enabled: self.enabled,
            timezone: self.timezone.name().to_string(),
            opening: None,
        }
    }

    pub fn from_event(e: &crate::event::PolicySet) -> Policy {
        Policy {
            id: e.policy_id,
            budget_id: e.budget_id,
            policy_type: e.policy_type,
            period: e.period,
            scope: e.scope.clone(),
            cost_limit: e.cost_limit,
            token_limit: e.token_limit,
            warning_threshold: e.warning_threshold,
            action_threshold: e.action_threshold,
            enabled: e.enabled,
            timezone: parse_timezone(&e.timezone).unwrap_or(Tz::UTC),
        }
    }
}

impl Scope {
    /// A canonical text of the scope: two scopes are the same policy slot exactly when their keys are.
    pub fn key(&self) -> String {
        let key = format!(
            "provider={}|model={}|component={}|tier={}|task_type={}",
            self.provider.as_ref().map_or("", |v| v.as_str()),
            self.model.as_ref().map_or("", |v| v.as_str()),
            self.component.as_ref().map_or("", |v| v.as_str()),
            self.tier.map_or("", Tier::as_str),
            self.task_type.as_ref().map_or("", |v| v.as_str()),
        );
        // Appended only when set, so the keys of scopes from before users existed stay the same.
        match &self.user {
            Some(user) => format!("{key}|user={user}"),
            None => key,
        }
    }
}

/// What a (policy, window) has taken: posted usage and pending reservations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub posted_cost: Decimal,
    pub posted_tokens: i64,
    pub pending_cost: Decimal,
    pub pending_tokens: i64,
    pub records: i64,
}

impl Account {
    /// What the window holds against its limits: posted usage plus pending reservations.
    pub fn held(&self) -> (Decimal, i64) {
        (self.posted_cost + self.pending_cost, self.posted_tokens + self.pending_tokens)
    }
}

/// Which budget a policy belongs to: an existing id, or a name (created on first use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetRef {
    Id(uuid::Uuid),
    Name(String),
}

/// The budget `set_limit` uses when none is named.
pub const DEFAULT_BUDGET: &str = "default";

/// A policy as it arrives on the wire (`POST /api/policies`, `budget set_limit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The budget's id; or give `budget` (a name).
    #[serde(default)]
    pub budget_id: Option<uuid::Uuid>,
    /// The budget's name, created on first use; default `default`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_budget_name))]
    pub budget: Option<String>,
    /// ignore, warn (default for a new policy; one set again keeps its own), soft_limit or hard_limit.
    #[serde(default, rename = "type", alias = "policy_type")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_policy_type))]
    pub policy_type: Option<String>,
    /// hourly, daily, weekly, monthly, per_session or per_task.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::policy_period))]
    pub period: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_provider))]
    pub provider: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_model))]
    pub model: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_component))]
    pub component: Option<String>,
    /// local_lightweight, local_midweight or remote_heavyweight.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tier))]
    pub tier: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_task_type))]
    pub task_type: Option<String>,
    /// A per-user limit: only records and allocations with this `user_id` count.
    #[serde(default, alias = "user_id")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_user_id))]
    pub user: Option<String>,
    /// USD per window (exact decimal).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_limit))]
    pub cost_limit: Option<crate::Money>,
    /// Tokens (input + output) per window.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_token_limit))]
    pub token_limit: Option<i64>,
    /// Fraction of the limit that raises a warning (default 0.8; with neither threshold given, a policy
    /// set again keeps both of its own).
    #[serde(default, with = "crate::money::optional_decimal_json")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_threshold))]
    pub warning_threshold: Option<Decimal>,
    /// Fraction of the limit that is critical (default 0.95).
    #[serde(default, with = "crate::money::optional_decimal_json")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_threshold))]
    pub action_threshold: Option<Decimal>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// IANA timezone of the calendar windows (default UTC; a policy set again keeps its own).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_timezone))]
    pub timezone: Option<String>,
}

/// A validated policy change: the command that becomes a `PolicySet` event.
#[derive(Debug, Clone, PartialEq)]
pub struct SetPolicy {
    pub budget: BudgetRef,
    pub policy_type: PolicyType,
    pub period: PolicyPeriod,
    pub scope: Scope,
    pub cost_limit: Option<crate::Money>,
    pub token_limit: Option<i64>,
    pub warning_threshold: Decimal,
    pub action_threshold: Decimal,
    pub enabled: bool,
    pub timezone: String,
    /// What the input left out, which a policy it replaces keeps instead of the defaults above.
    pub kept: Kept,
}

/// The settings a change leaves out, kept from the policy it replaces (a new one takes the defaults):
/// setting a $5 hard limit again as $8 without its type made it a $8 warning, which refuses nothing.
/// The thresholds are kept only together (one given sets both, as for a new policy), so that they
/// are checked against each other before the change is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kept {
    pub policy_type: bool,
    pub thresholds: bool,
    pub timezone: bool,
}

impl SetPolicy {
    /// Validates every field; reports every problem at once as (field, message).
    pub fn validate(input: &PolicyInput) -> Result<SetPolicy, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut fail = |field: &str, message: String| errors.push((field.to_string(), message));
        let period = input.period.parse::<PolicyPeriod>().map_err(|e| fail("period", e)).ok();
        let policy_type = match &input.policy_type {
            Some(t) => t.parse::<PolicyType>().map_err(|e| fail("type", e)).ok(),
            None => Some(PolicyType::Warn),
        };
        let tier = match &input.tier {
            Some(t) => t.parse::<Tier>().map(Some).map_err(|e| fail("tier", e)).ok(),
            None => Some(None),
        };
        let mut scope = Scope { tier: tier.flatten(), ..Default::default() };
        if let Some(v) = &input.provider {
            scope.provider = Provider::parse(v).map_err(|e| fail("provider", e.to_string())).ok();
        }
        if let Some(v) = &input.model {
            scope.model = Model::parse(v).map_err(|e| fail("model", e.to_string())).ok();
        }
        if let Some(v) = &input.component {
            scope.component = Component::parse(v).map_err(|e| fail("component", e.to_string())).ok();
        }
        if let Some(v) = &input.task_type {
            scope.task_type = TaskType::parse(v).map_err(|e| fail("task_type", e.to_string())).ok();
        }
        if let Some(v) = &input.user {
            scope.user = UserId::parse(v).map_err(|e| fail("user", e.to_string())).ok();
        }
        if input.cost_limit.is_none() && input.token_limit.is_none() {
            fail("cost_limit", "give cost_limit (USD) or token_limit (tokens), or both".into());
        }
        if let Some(t) = input.token_limit {
            if t < 0 {
                fail("token_limit", format!("token_limit is {t}; it must be 0 or more"));
            }
        }
        let warning = input.warning_threshold.unwrap_or(Decimal::new(8, 1));
        let action = input.action_threshold.unwrap_or(Decimal::new(95, 2));
        let warning = check_threshold("warning_threshold", warning).map_err(|e| fail("warning_threshold", e)).ok();
        let action = check_threshold("action_threshold", action).map_err(|e| fail("action_threshold", e)).ok();
        if let (Some(w), Some(a)) = (warning, action) {
            if w > a {
                fail(
                    "warning_threshold",
                    format!("warning_threshold {w} is above action_threshold {a}; the warning comes first"),
                );
            }
        }
        let timezone = input.timezone.clone().unwrap_or_else(|| "UTC".into());
        if let Err(e) = parse_timezone(&timezone) {
            fail("timezone", e);
        }
        let budget = match (&input.budget_id, &input.budget) {
            (Some(id), None) => Some(BudgetRef::Id(*id)),
            (None, name) => {
                let name = name.as_deref().unwrap_or(DEFAULT_BUDGET).trim().to_string();
                if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
                    fail("budget", "budget names are 1 to 128 printable characters".into());
                    None
                } else {
                    Some(BudgetRef::Name(name))
                }
            }
            (Some(_), Some(_)) => {
                fail("budget", "give budget_id or budget (a name), not both".into());
                None
            }
        };
        match (budget, policy_type, period, warning, action) {
            (Some(budget), Some(policy_type), Some(period), Some(warning_threshold), Some(action_threshold))
                if errors.is_empty() =>
            {
                Ok(SetPolicy {
                    budget,
                    policy_type,
                    period,
                    scope,
                    cost_limit: input.cost_limit,
                    token_limit: input.token_limit,
                    warning_threshold,
                    action_threshold,
                    enabled: input.enabled.unwrap_or(true),
                    timezone,
                    kept: Kept {
                        policy_type: input.policy_type.is_none(),
                        thresholds: input.warning_threshold.is_none() && input.action_threshold.is_none(),
                        timezone: input.timezone.is_none(),
                    },
                })
            }
            _ => Err(errors),
        }
    }
}

/// Which tier a provider's or a model's calls are, when the client does not say. Configured with
/// `BUDGET_TIER_MAP` (JSON: `{"providers": {"ollama": "local_lightweight"}, "models": {"llama3:70b":
/// "local_midweight"}}`); a model entry wins over a provider entry, and anything unlisted falls back to
/// [`Tier::derive`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierMap {
    #[serde(default)]
    pub providers: std::collections::HashMap<String, Tier>,
    #[serde(default)]
    pub models: std::collections::HashMap<String, Tier>,
}

impl TierMap {
    pub fn parse(json: &str) -> Result<TierMap, String> {
        serde_json::from_str(json)
            .map_err(|e| format!("{e}; expected {{\"providers\": {{NAME: TIER}}, \"models\": {{NAME: TIER}}}}"))
    }

    pub fn resolve(&self, provider: &str, model: &str) -> Tier {
        self.models
            .get(model)
            .or_else(|| self.providers.get(&provider.to_ascii_lowercase()))
            .copied()
            .unwrap_or_else(|| Tier::derive(provider, model))
    }
}

#[cfg(test)]
mod tier_map_tests {
    use super::*;

    #[test]
    fn a_model_entry_wins_over_a_provider_entry_and_defaults_fill_the_rest() {
        let map = TierMap::parse(
            r#"{"providers": {"groq": "local_midweight"}, "models": {"groq-tiny": "local_lightweight"}}"#,
        )
        .unwrap();
        assert_eq!(map.resolve("groq", "llama-70b"), Tier::LocalMidweight);
        assert_eq!(map.resolve("groq", "groq-tiny"), Tier::LocalLightweight);
        assert_eq!(map.resolve("openai", "gpt-4o"), Tier::RemoteHeavyweight);
        // The configuration's error names the variable; this one says what is wrong and the shape.
        let e = TierMap::parse(r#"{"providers": {"x": "giant"}}"#).unwrap_err();
        assert!(e.contains("giant") && e.contains("expected {\"providers\""), "{e}");
    }
}
