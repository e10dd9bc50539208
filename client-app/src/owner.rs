//! A scripted resource owner: does in code what a person does in a browser at
//! the authorization server's pages (open the authorization URL, sign in,
//! approve), over plain HTTP, so the demo and the tests can drive the real pages.
//!
//! It behaves like a careful browser: keeps the cookies the server sets and sends
//! them back to it alone, submits the forms with their hidden fields (the CSRF
//! token among them), and follows redirects one at a time so each is visible.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

use crate::ClientError;

/// One HTTP response as the browser saw it.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: url::Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect points, resolved against the page's URL.
    pub fn location(&self) -> Option<url::Url> {
        let location = self.headers.get(LOCATION)?.to_str().ok()?;
        self.url.join(location).ok()
    }

    /// The value of the form field `name`, HTML entities decoded.
    pub fn field(&self, name: &str) -> Option<String> {
        form_fields(&self.body).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The hidden fields of the page's form, as a browser would submit them.
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        input_tags(&self.body)
            .filter(|tag| attribute(tag, "type").as_deref() == Some("hidden"))
            .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn input_tags(html: &str) -> impl Iterator<Item = &str> {
    html.split("<input").skip(1).filter_map(|rest| rest.split_once('>').map(|(tag, _)| tag))
}

/// `name="value"` inside a tag (the pages quote every attribute with `"`).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    Some(html_escape::decode_html_entities(&tag[start..end]).into_owned())
}

fn form_fields(html: &str) -> Vec<(String, String)> {
    input_tags(html)
        .filter_map(|tag| {
            Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default()))
        })
        .collect()
}

/// The resource owner's browser.
#[derive(Debug)]
pub struct ScriptedOwner {
    http: reqwest::Client,
    /// Cookies by name, for the one origin this browser talks to.
    cookies: BTreeMap<String, String>,
    origin: Option<url::Origin>,
}

impl ScriptedOwner {
    pub fn new() -> Result<Self, ClientError> {
        Self::with_http(reqwest::Client::builder())
    }

    /// Like [`ScriptedOwner::new`], with HTTP settings of the caller's. The owner
    /// follows redirects itself (to see each page), whatever the builder says.
    pub fn with_http(http: reqwest::ClientBuilder) -> Result<Self, ClientError> {
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self { http, cookies: BTreeMap::new(), origin: None })
    }

    /// Names of the cookies held (values are the server's secret).
    pub fn cookie_names(&self) -> Vec<&str> {
        self.cookies.keys().map(String::as_str).collect()
    }

    /// Forgets every cookie, as a new browser profile would.
    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    pub async fn get(&mut self, url: &url::Url) -> Result<Page, ClientError> {
        let request = self.with_cookies(self.http.get(url.clone()), url);
        self.send(url, request).await
    }

    /// Submits a form: `fields` as `application/x-www-form-urlencoded` to `url`.
    pub async fn post(
        &mut self,
        url: &url::Url,
        fields: &[(String, String)],
    ) -> Result<Page, ClientError> {
        let request = self.with_cookies(self.http.post(url.clone()).form(fields), url);
        self.send(url, request).await
    }

    /// Submits the page's form to `action` with its hidden fields plus `extra`.
    pub async fn submit(
        &mut self,
        page: &Page,
        action: &str,
        extra: &[(&str, &str)],
    ) -> Result<Page, ClientError> {
        let url = page.url.join(action).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut fields = page.hidden_fields();
        fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.post(&url, &fields).await
    }

    /// Follows a redirect (one hop).
    pub async fn follow(&mut self, page: &Page) -> Result<Page, ClientError> {
        let next = page.location().ok_or_else(|| {
            ClientError::Protocol(format!(
                "expected a redirect from {}, got {}",
                page.url, page.status
            ))
        })?;
        self.get(&next).await
    }

    fn with_cookies(
        &self,
        request: reqwest::RequestBuilder,
        url: &url::Url,
    ) -> reqwest::RequestBuilder {
        // The browser's requests belong to the client's trace (a real browser
        // would not send it; the scripted owner stands in for one in the flow).
        let request = request.headers(tollgate_telemetry::propagation::current_headers());
        let same_origin = self.origin.as_ref() == Some(&url.origin());
        if !same_origin || self.cookies.is_empty() {
            return request;
        }
        let header =
            self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        request.header(COOKIE, header)
    }

    async fn send(
        &mut self,
        url: &url::Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Page, ClientError> {
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookies: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
        if !set_cookies.is_empty() {
            // Cookies belong to the server that set them; a redirect to the client
            // must not carry them along.
            if self.origin.as_ref() != Some(&url.origin()) {
                self.cookies.clear();
                self.origin = Some(url.origin());
            }
            for value in set_cookies {
                let Ok(value) = value.to_str() else { continue };
                let pair = value.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
        }
        let body = response.text().await?;
        Ok(Page { url: url.clone(), status, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_are_read_and_decoded() {
        let html = r#"<form><input type="hidden" name="authz" value="a=1&amp;b=http&#x3a;&#x2f;&#x2f;x">
            <input type="hidden" name="csrf_token" value="tok">
            <input type="text" name="username" required></form>"#;
        let page = Page {
            url: url::Url::parse("http://127.0.0.1/").unwrap(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: html.into(),
        };
        assert_eq!(
            page.hidden_fields(),
            vec![
                ("authz".to_owned(), "a=1&b=http://x".to_owned()),
                ("csrf_token".to_owned(), "tok".to_owned())
            ]
        );
        assert_eq!(page.field("csrf_token").as_deref(), Some("tok"));
    }
}
