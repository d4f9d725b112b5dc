//! Paging of list answers, parsed once: `MaxResults` + `NextToken` (the offset of the next
//! page, as a decimal string) or the legacy `PageNumber` + `PageSize`. All arithmetic is
//! checked: a token past the end, however large, is an empty last page, never a panic.

use std::ops::Range;

use control::limits::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
use serde_json::{json, Value};

use crate::error::{Result, ServerError};
use crate::wire::Params;

/// How a request pages a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paging {
    /// From offset `start`, at most `max` items (`None`: all the rest).
    Token { start: usize, max: Option<usize> },
    /// Page `number` (from 1) of `size` items.
    Pages { number: usize, size: usize },
}

/// The items of one page and the token of the next (empty on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) range: Range<usize>,
    pub(crate) next_token: String,
}

/// The offset a `NextToken` names.
fn next_token(p: &Params) -> Result<usize> {
    match p.opt("NextToken") {
        None => Ok(0),
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ServerError::invalid("NextToken", t)),
    }
}

impl Paging {
    /// The paging of a `Describe...` list: tokens when `MaxResults` or `NextToken` is given
    /// (`MaxResults` defaults to ten, as ECS's does), pages otherwise.
    pub(crate) fn parse(p: &Params) -> Result<Paging> {
        let max = p.number("MaxResults", 1, PAGE_SIZE_MAX)?;
        if max.is_some() || p.opt("NextToken").is_some() {
            return Ok(Paging::Token {
                start: next_token(p)?,
                max: Some(max.unwrap_or(PAGE_SIZE_DEFAULT) as usize),
            });
        }
        let number = p.number("PageNumber", 1, u32::MAX as u64)?.unwrap_or(1) as usize;
        let size = p
            .number("PageSize", 1, PAGE_SIZE_MAX)?
            .unwrap_or(PAGE_SIZE_DEFAULT) as usize;
        Ok(Paging::Pages { number, size })
    }

    /// Token paging of pages of `max` items (`None`: all the rest), for lists whose page
    /// size the caller decides.
    pub(crate) fn after_token(p: &Params, max: Option<u64>) -> Result<Paging> {
        Ok(Paging::Token {
            start: next_token(p)?,
            max: max.map(|m| m as usize),
        })
    }

    /// The page of a list of `total` items.
    pub(crate) fn window(&self, total: usize) -> Window {
        let (start, size) = match *self {
            Paging::Token { start, max } => (start, max.unwrap_or(usize::MAX)),
            Paging::Pages { number, size } => (number.saturating_sub(1).saturating_mul(size), size),
        };
        let start = start.min(total);
        let end = start.saturating_add(size).min(total);
        let next_token = if end < total {
            end.to_string()
        } else {
            String::new()
        };
        Window {
            range: start..end,
            next_token,
        }
    }

    /// The paging fields of a `Describe...` answer: `NextToken`, `PageNumber`, `PageSize` and
    /// `TotalCount` whichever way the request paged, as the SDKs' models have all four (a
    /// page's `NextToken` continues right after it; a token page's number is where its
    /// start falls in pages of its size).
    pub(crate) fn fields(&self, window: &Window, total: usize) -> Value {
        let (number, size) = match *self {
            Paging::Token { start, max } => {
                let size = max.unwrap_or(total.max(1));
                ((start / size.max(1)).saturating_add(1), size)
            }
            Paging::Pages { number, size } => (number, size),
        };
        json!({
            "NextToken": window.next_token,
            "PageNumber": number,
            "PageSize": size,
            "TotalCount": total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let q: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        Params::parse(Some(&q), None)
    }

    #[test]
    fn huge_tokens_are_an_empty_last_page() {
        let p = params(&[("NextToken", "18446744073709551615"), ("MaxResults", "1")]);
        let w = Paging::parse(&p).unwrap().window(3);
        assert_eq!(
            w,
            Window {
                range: 3..3,
                next_token: String::new()
            }
        );
        let w = Paging::after_token(&p, None).unwrap().window(3);
        assert!(w.range.is_empty());
        let p = params(&[("PageNumber", "4294967295"), ("PageSize", "100")]);
        assert!(Paging::parse(&p).unwrap().window(5).range.is_empty());
    }

    #[test]
    fn tokens_walk_the_list() {
        let p = params(&[("MaxResults", "2")]);
        let w = Paging::parse(&p).unwrap().window(5);
        assert_eq!((w.range, w.next_token.as_str()), (0..2, "2"));
        let p = params(&[("MaxResults", "2"), ("NextToken", "4")]);
        let w = Paging::parse(&p).unwrap().window(5);
        assert_eq!((w.range, w.next_token.as_str()), (4..5, ""));
        assert!(Paging::parse(&params(&[("MaxResults", "2"), ("NextToken", "-1")])).is_err());
        assert!(Paging::parse(&params(&[("MaxResults", "101")])).is_err());
    }

    #[test]
    fn pages_default_to_ten() {
        let paging = Paging::parse(&params(&[("PageNumber", "2")])).unwrap();
        assert_eq!(paging.window(25).range, 10..20);
    }
}
