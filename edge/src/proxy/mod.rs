//! The request path: accept (`server`, `tls`, `preface`; HTTP/2 in `http2/`; what they tell the pipeline in `downstream`), route (`route`, `https`), the phases of a GET
//! or HEAD (`pipeline`) and of other methods (`passthrough`), origin fills (`fill`), answers
//! from held responses (`respond`, `range`; number-valued fields in `numbers`), large objects in slices (`slice`), header rules (`headers`), 1xx
//! forwarding to clients (`interim`), the opt-in `Stratus-Debug` field (`debug`) and the one source of
//! `Cache-Status` and request metrics (`status`).

pub(crate) mod conns;
pub(crate) mod ctx;
pub(crate) mod debug;
pub(crate) mod downstream;
pub(crate) mod fill;
pub(crate) mod headers;
pub(crate) mod http2;
pub(crate) mod https;
pub(crate) mod interim;
pub(crate) mod numbers;
pub(crate) mod passthrough;
pub(crate) mod pipeline;
pub(crate) mod preface;
pub(crate) mod range;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod server;
pub(crate) mod slice;
pub(crate) mod status;
pub(crate) mod tls;
