//! Errors in the OpenAI API's shape: an HTTP status and the JSON body
//! `{"error": {"message", "type", "param", "code"}}`.

use serde::Serialize;

use crate::error::{Error, ErrorKind};

/// One failed API call: what the HTTP status and the OpenAI-style JSON error body say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// HTTP status code.
    #[serde(skip)]
    pub status: u16,
    /// One line naming the problem.
    pub message: String,
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `voice_not_found`, ...), when there is one.
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400: a field of the request is wrong.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message).with_param(param)
    }

    /// 400: the request as a whole is wrong (not JSON, not an object, ...).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }

    /// 404: no such thing (`code` says what: `model_not_found`, `voice_not_found`, ...).
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(404, "invalid_request_error", message).with_code(code)
    }

    /// 409: the thing exists already.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(409, "invalid_request_error", message).with_code(code)
    }

    /// 401: no or a wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "authentication_error", message).with_code("invalid_api_key")
    }

    /// 413: the request body is larger than allowed.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "invalid_request_error", message).with_code("request_too_large")
    }

    /// 429: the queue is full.
    pub fn queue_full(message: impl Into<String>) -> ApiError {
        ApiError::new(429, "rate_limit_error", message).with_code("queue_full")
    }

    /// 503: the server is shutting down or cannot take work.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "server_error", message).with_code("unavailable")
    }

    /// 504: the synthesis ran past the request timeout.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "server_error", message).with_code("timeout")
    }

    /// 500: something broke on our side.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "server_error", message)
    }

    /// Sets the request field at fault.
    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_string());
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// The library error's kind as HTTP: the caller's mistakes (arguments, text, audio)
    /// are 400 naming the parameter, a memory budget that cannot be met 503, a cancelled
    /// synthesis 499 (the client went away), everything else 500.
    pub fn from_engine(e: &Error) -> ApiError {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::InvalidArgument => {
                let param = match e {
                    Error::InvalidArgument { name, .. } => Some(name.as_str()),
                    _ => None,
                };
                let err = ApiError::bad_request(message);
                match param {
                    Some(p) => err.with_param(p),
                    None => err,
                }
            }
            ErrorKind::InvalidText => ApiError::invalid("input", message),
            ErrorKind::InvalidAudio => ApiError::invalid("file", message),
            ErrorKind::Budget => ApiError::unavailable(message),
            ErrorKind::Cancelled => {
                ApiError::new(499, "invalid_request_error", message).with_code("cancelled")
            }
            _ => ApiError::internal(message),
        }
    }

    /// The JSON body: `{"error": {...}}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self }).to_string()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::from_engine(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_openai_shape() {
        let e = ApiError::invalid("speed", "no speed control");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(e.status, 400);
        assert_eq!(v["error"]["message"], "no speed control");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "speed");
        assert!(v["error"]["code"].is_null());
        assert!(v["error"].get("status").is_none());
    }

    #[test]
    fn engine_errors_map_to_statuses_and_params() {
        let e = ApiError::from_engine(&Error::invalid_argument("temperature", "must be > 0"));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("temperature")));
        let e = ApiError::from_engine(&Error::invalid_text("empty"));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("input")));
        assert_eq!(ApiError::from_engine(&Error::budget("x")).status, 503);
        assert_eq!(ApiError::from_engine(&Error::cancelled("x")).status, 499);
        assert_eq!(ApiError::from_engine(&Error::runtime("x")).status, 500);
    }
}
