//! The optional narrative: the deterministic findings sent to an OpenAI-compatible chat completions
//! endpoint (`BUDGET_ASSISTANT_LLM_URL`, e.g. a local Ollama or vLLM), its reply added as `narrative`.
//! A timeout or failure never fails the request: the findings come back with `narrative_error`. The
//! call itself is recorded as usage of component `budget-assistant`.

use std::time::Duration;

use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::ledger::{UsageCommand, UsageItem};
use serde_json::{json, Value};

use crate::state::AppState;

/// Where the assistant's LLM is.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// The endpoint: a base URL (`…/v1`) or the full `…/chat/completions` one.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

impl LlmSettings {
    fn endpoint(&self) -> String {
        let url = self.url.trim_end_matches('/');
        if url.ends_with("/chat/completions") {
            url.to_string()
        } else {
            format!("{url}/chat/completions")
        }
    }
}

const SYSTEM: &str = "You are the Budget assistant. You explain LLM spending to the engineers who pay for it. \
Use only the figures given; do not invent numbers. Answer in a few short paragraphs: what happened, what \
matters, what to do first.";

/// Asks the LLM to narrate `findings`; returns the text, or why there is none.
pub async fn narrate(state: &AppState, kind: &str, findings: &Value) -> Result<String, String> {
    let Some(llm) = &state.assistant_llm else {
        return Err("no LLM is configured (BUDGET_ASSISTANT_LLM_URL); the findings stand on their own".into());
    };
    let body = json!({
        "model": llm.model,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": format!("The {kind} of our LLM spending, as JSON:\n{findings}\n\nNarrate it.")},
        ],
    });
    let mut request = reqwest::Client::new().post(llm.endpoint()).timeout(llm.timeout).json(&body);
    if let Some(key) = &llm.api_key {
        request = request.bearer_auth(key);
    }
    let response =
        request.send().await.map_err(|e| format!("the assistant's LLM at {} did not answer: {e}", llm.url))?;
    let status = response.status();
    let reply: Value =
        response.json().await.map_err(|e| format!("the assistant's LLM sent something that is not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!("the assistant's LLM refused: HTTP {status}: {reply}"));
    }
    let text = reply["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| format!("the assistant's LLM reply has no choices[0].message.content: {reply}"))?
        .to_string();
    record_own_usage(state, llm, &reply).await;
    Ok(text)
}

/// The service eats its own cooking: the narrative's tokens are usage like any other.
async fn record_own_usage(state: &AppState, llm: &LlmSettings, reply: &Value) {
    let usage = &reply["usage"];
    let input = UsageInput {
        provider: "assistant-llm".into(),
        model: llm.model.clone(),
        component: "budget-assistant".into(),
        task_type: Some("analysis".into()),
        context_id: None,
        session_id: None,
        tier: None,
        input_tokens: usage["prompt_tokens"].as_i64().unwrap_or(0),
        output_tokens: usage["completion_tokens"].as_i64().unwrap_or(0),
        cached_input_tokens: None,
        cache_creation_input_tokens: None,
        reasoning_tokens: None,
        cost: None,
        timestamp: None,
        request_id: None,
        allocation_id: None,
        user_id: None,
        operation_id: None,
        metadata: None,
    };
    let mut input = input;
    state.fill_tier(&mut input);
    match RecordUsage::validate_with(&input, chrono::Utc::now(), state.max_record_cost) {
        Ok(record) => {
            let command = UsageCommand {
                items: vec![UsageItem { record, key: None }],
                key: None,
                metadata: Default::default(),
                signer: None,
            };
            if let Err(e) = state.writer.submit(command).await {
                tracing::warn!(error = %e, "could not record the assistant's own LLM usage");
            }
        }
        Err(e) => tracing::warn!(error = %e, "the assistant's LLM usage does not validate"),
    }
}
