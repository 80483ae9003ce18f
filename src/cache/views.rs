//! Queries the read commands need beyond the mirror's own (kept apart from `mirror.rs`, which the
//! sync owns).

use super::{Cache, CacheError};

impl Cache {
    /// Forgets every stored ETag and body, so the next conditional GETs are plain ones: what
    /// `crew cache rebuild` needs to refetch rather than replay stored copies. Returns how many
    /// were forgotten. Lease commits (immutable, keyed by sha) and the process table stay.
    pub async fn forget_all_responses(&self) -> Result<usize, CacheError> {
        self.call(|connection| connection.execute("DELETE FROM http_etags", []))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StoredResponse;

    #[tokio::test]
    async fn all_responses_are_forgotten() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        for url in ["a", "b"] {
            cache
                .store_response(
                    url,
                    StoredResponse {
                        etag: "\"e\"".to_string(),
                        body: b"[]".to_vec(),
                        link: None,
                        fetched_at: "2026-01-01T00:00:00Z".to_string(),
                    },
                )
                .await?;
        }
        assert_eq!(cache.forget_all_responses().await?, 2);
        assert_eq!(cache.stored_response("a").await?, None);
        Ok(())
    }
}
