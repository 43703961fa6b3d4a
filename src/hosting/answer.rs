//! One call to a provider's API as the three providers make them: send, read the status and the
//! body, and turn a status or a body that is not what the API documents into a `HostingError`
//! naming the provider and what the call was for.

use serde_json::Value;

use super::{HostingError, PullRequest, error_message};

/// The status and body of one answer, with what the call was for.
pub(super) struct Answer {
    pub status: u16,
    pub body: String,
    provider: &'static str,
    what: &'static str,
}

impl Answer {
    /// Sends `request`; a transport error (no answer at all) is `HostingError::Http`.
    pub async fn of(
        provider: &'static str,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, HostingError> {
        let http = |source| HostingError::Http {
            provider,
            what,
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(http)?;
        Ok(Answer {
            status,
            body,
            provider,
            what,
        })
    }

    /// The answer was refused: its status and the error body's message.
    pub fn refused(&self) -> HostingError {
        HostingError::Status {
            provider: self.provider,
            what: self.what,
            status: self.status,
            message: error_message(&self.body),
        }
    }

    /// This answer if its status is `ok`, else `refused`.
    pub fn expect(self, ok: u16) -> Result<Answer, HostingError> {
        if self.status == ok {
            Ok(self)
        } else {
            Err(self.refused())
        }
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, HostingError> {
        serde_json::from_str(&self.body).map_err(|e| self.malformed(e.to_string()))
    }

    /// The body is not what the API documents.
    pub fn malformed(&self, why: String) -> HostingError {
        HostingError::Response {
            provider: self.provider,
            what: self.what,
            why,
        }
    }

    /// The pull request in `v` (a part of this answer), under the provider's keys for its
    /// number and its web page.
    pub fn pull_request(
        &self,
        v: &Value,
        (number, url): (&str, &str),
        existed: bool,
    ) -> Result<PullRequest, HostingError> {
        match (
            v.get(number).and_then(Value::as_u64),
            v.get(url).and_then(Value::as_str),
        ) {
            (Some(n), Some(u)) => Ok(PullRequest {
                number: n,
                url: u.to_string(),
                existed,
            }),
            _ => Err(self.malformed(format!("no `{number}` or `{url}`"))),
        }
    }
}
