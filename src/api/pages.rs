//! [`Pages`]: every item of an HCSS list endpoint, page after page.

use serde::de::DeserializeOwned;

use super::HcssApiRequest;
use crate::error::HcssApiError;

/// The pages of an HCSS list endpoint, from [`HcssApiRequest::pages`]. HCSS's list
/// endpoints page with a cursor: the request takes `limit` and `cursor` in its query,
/// and the answer is `{"results": [...], "metadata": {"nextCursor": "..."}}`, with no
/// `nextCursor` on the last page. (HCSS's API reference is behind its developer portal's
/// sign-in; the shape here is the one its HeavyJob endpoints answer with, e.g.
/// `timeCardInfo`.) An endpoint that answers a plain JSON array is read as one page.
/// Each page is a call of its own, through the company's budget, with the client's
/// retries.
///
/// ```no_run
/// # async fn run(api: hcss_auth::HcssApi) -> Result<(), hcss_auth::HcssApiError> {
/// let jobs: Vec<serde_json::Value> = api
///     .for_company("4f2d9c7a-0002-4000-8000-0000000000c0")
///     .get("/heavyjob/api/v1/jobs")
///     .pages()
///     .limit(500)
///     .all()
///     .await?;
/// # let _ = jobs; Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "pages are fetched by next_page or all"]
pub struct Pages {
    request: HcssApiRequest,
    limit: Option<u32>,
    cursor: Option<String>,
    /// The cursors followed so far: one seen again ends the pages with an error, rather
    /// than spend the company's budget going round.
    seen: std::collections::HashSet<String>,
    done: bool,
}

/// A page as HCSS sends it, its items decoded into the app's type afterwards
/// ([`items`]): decoded here, an item that is not `T` would only say that the page
/// matched no shape.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Page {
    Paged {
        results: Vec<serde_json::Value>,
        #[serde(default)]
        metadata: Option<Metadata>,
    },
    Plain(Vec<serde_json::Value>),
}

/// The items of a page as `T`, or an error that says which one is not and why.
fn items<T: DeserializeOwned>(values: Vec<serde_json::Value>) -> Result<Vec<T>, HcssApiError> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            T::deserialize(value).map_err(|err| HcssApiError::Invalid {
                reason: format!("item {i} of the page is not the JSON expected: {err}"),
            })
        })
        .collect()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    next_cursor: Option<String>,
}

impl Pages {
    pub(super) fn new(request: HcssApiRequest) -> Self {
        Self {
            request,
            limit: None,
            cursor: None,
            seen: std::collections::HashSet::new(),
            done: false,
        }
    }

    /// Items per page (`limit`), when the endpoint's default will not do.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The next page's items, or `None` after the last page.
    ///
    /// # Errors
    ///
    /// As [`HcssApiRequest::send`]; [`HcssApiError::Invalid`] for a status other than
    /// 2xx, a page that is not the shape above, or a `nextCursor` given before (an
    /// endpoint going round in circles). After an error that passes (one with a
    /// [`retry_after`](HcssApiError::retry_after): the budget spent, HCSS unavailable),
    /// the next call asks for the same page again; after any other, the pages end there
    /// (`None`).
    pub async fn next_page<T: DeserializeOwned>(&mut self) -> Option<Result<Vec<T>, HcssApiError>> {
        if self.done {
            return None;
        }
        let mut extra = Vec::new();
        if let Some(limit) = self.limit {
            extra.push(("limit".to_owned(), limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            extra.push(("cursor".to_owned(), cursor.clone()));
        }
        let page = match self.request.clone_with_query(&extra).send().await {
            Ok(response) => response.success_json::<Page>(),
            Err(err) => Err(err),
        };
        Some(match page {
            Ok(Page::Paged { results, metadata }) => {
                let next = metadata
                    .and_then(|m| m.next_cursor)
                    .filter(|c| !c.is_empty());
                match next {
                    Some(cursor) if !self.seen.insert(cursor.clone()) => {
                        self.done = true;
                        tracing::warn!("an HCSS list endpoint gave a page cursor it gave before; the pages end there");
                        Err(HcssApiError::Invalid {
                            reason: "the endpoint gave a page cursor it had given before".into(),
                        })
                    }
                    next => match items(results) {
                        Ok(items) => {
                            self.done = next.is_none();
                            self.cursor = next;
                            Ok(items)
                        }
                        Err(err) => {
                            self.done = true;
                            Err(err)
                        }
                    },
                }
            }
            Ok(Page::Plain(values)) => {
                self.done = true;
                items(values)
            }
            // One that passes (the budget, HCSS down for now): the same page next time.
            Err(err) if err.retry_after().is_some() => Err(err),
            Err(err) => {
                self.done = true;
                Err(err)
            }
        })
    }

    /// Every item, page after page, for as long as the endpoint gives a cursor not given
    /// before: each page is a call in the company's budget, and every item is held until
    /// the last page. For an endpoint that may page without end (a bug, a proxy), call
    /// [`next_page`](Self::next_page) and stop at what the app needs.
    ///
    /// # Errors
    ///
    /// The first error of any page, as [`next_page`](Self::next_page); the items read
    /// before it are dropped.
    pub async fn all<T: DeserializeOwned>(mut self) -> Result<Vec<T>, HcssApiError> {
        let mut items = Vec::new();
        while let Some(page) = self.next_page().await {
            items.extend(page?);
        }
        Ok(items)
    }
}
