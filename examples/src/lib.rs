//! Runnable programs for kigo-rs. The quickstart arrives with kigo-http.
