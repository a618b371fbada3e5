//! The protobuf messages of Envoy's external authorization gRPC service
//! (`envoy.service.auth.v3.Authorization/Check`), written by hand with
//! `prost` derives: only the fields Portcullis sends or reads. Field numbers are
//! those of the `.proto` files named on each message (envoyproxy/envoy `api/`);
//! fields not modelled here are skipped when decoding, as protobuf requires.
//!
//! A one-member `oneof` is modelled as a plain optional field: the wire format
//! is the same.

use prost::alloc::collections::BTreeMap;

/// `google.protobuf.Timestamp` (google/protobuf/timestamp.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    /// `int64 seconds = 1`
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `int32 nanos = 2`
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.BoolValue` (google/protobuf/wrappers.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// `bool value = 1`
    #[prost(bool, tag = "1")]
    pub value: bool,
}

/// `google.rpc.Status` (google/rpc/status.proto). `details = 3` is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// `int32 code = 1` (a `google.rpc.Code`; 0 is OK)
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `string message = 2`
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.config.core.v3.SocketAddress` (envoy/config/core/v3/address.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// `Protocol protocol = 1` (TCP = 0)
    #[prost(int32, tag = "1")]
    pub protocol: i32,
    /// `string address = 2`
    #[prost(string, tag = "2")]
    pub address: String,
    /// `oneof port_specifier { uint32 port_value = 3; string named_port = 4; }`
    #[prost(uint32, optional, tag = "3")]
    pub port_value: Option<u32>,
}

/// `envoy.config.core.v3.Address` (address.proto):
/// `oneof address { SocketAddress socket_address = 1; Pipe pipe = 2; EnvoyInternalAddress envoy_internal_address = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.HeaderValue` (envoy/config/core/v3/base.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// `string key = 1`
    #[prost(string, tag = "1")]
    pub key: String,
    /// `string value = 2`
    #[prost(string, tag = "2")]
    pub value: String,
    /// `bytes raw_value = 3`
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `envoy.config.core.v3.HeaderValueOption` (base.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// `HeaderValue header = 1`
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `google.protobuf.BoolValue append = 2` (deprecated)
    #[prost(message, optional, tag = "2")]
    pub append: Option<BoolValue>,
    /// `HeaderAppendAction append_action = 3`
    #[prost(int32, tag = "3")]
    pub append_action: i32,
    /// `bool keep_empty_value = 4`
    #[prost(bool, tag = "4")]
    pub keep_empty_value: bool,
}

/// `HeaderValueOption.HeaderAppendAction` values (base.proto).
pub mod append_action {
    pub const APPEND_IF_EXISTS_OR_ADD: i32 = 0;
    pub const ADD_IF_ABSENT: i32 = 1;
    pub const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;
    pub const OVERWRITE_IF_EXISTS: i32 = 3;
}

/// `envoy.type.v3.HttpStatus` (envoy/type/v3/http_status.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// `StatusCode code = 1` (the HTTP status number itself)
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `envoy.service.auth.v3.AttributeContext.Peer` (envoy/service/auth/v3/attribute_context.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// `config.core.v3.Address address = 1`
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    /// `string service = 2`
    #[prost(string, tag = "2")]
    pub service: String,
    /// `string principal = 4`
    #[prost(string, tag = "4")]
    pub principal: String,
}

/// `AttributeContext.Request` (attribute_context.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeRequest {
    /// `google.protobuf.Timestamp time = 1`
    #[prost(message, optional, tag = "1")]
    pub time: Option<Timestamp>,
    /// `HttpRequest http = 2`
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest` (attribute_context.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// `string id = 1`
    #[prost(string, tag = "1")]
    pub id: String,
    /// `string method = 2`
    #[prost(string, tag = "2")]
    pub method: String,
    /// `map<string, string> headers = 3`
    #[prost(btree_map = "string, string", tag = "3")]
    pub headers: BTreeMap<String, String>,
    /// `string path = 4`
    #[prost(string, tag = "4")]
    pub path: String,
    /// `string host = 5`
    #[prost(string, tag = "5")]
    pub host: String,
    /// `string scheme = 6`
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// `string query = 7`
    #[prost(string, tag = "7")]
    pub query: String,
    /// `string fragment = 8`
    #[prost(string, tag = "8")]
    pub fragment: String,
    /// `int64 size = 9`
    #[prost(int64, tag = "9")]
    pub size: i64,
    /// `string protocol = 10`
    #[prost(string, tag = "10")]
    pub protocol: String,
    /// `string body = 11`
    #[prost(string, tag = "11")]
    pub body: String,
    /// `bytes raw_body = 12`
    #[prost(bytes = "vec", tag = "12")]
    pub raw_body: Vec<u8>,
    /// `config.core.v3.HeaderMap header_map = 13`: every header with its
    /// `raw_value` bytes (Envoy's `encode_raw_headers`); Portcullis fills it when
    /// a value is not UTF-8, which `headers` (proto strings) cannot carry.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// `envoy.config.core.v3.HeaderMap` (base.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    /// `repeated HeaderValue headers = 1`
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `envoy.service.auth.v3.AttributeContext` (attribute_context.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// `Peer source = 1`
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// `Peer destination = 2`
    #[prost(message, optional, tag = "2")]
    pub destination: Option<Peer>,
    /// `Request request = 4`
    #[prost(message, optional, tag = "4")]
    pub request: Option<AttributeRequest>,
    /// `map<string, string> context_extensions = 10`
    #[prost(btree_map = "string, string", tag = "10")]
    pub context_extensions: BTreeMap<String, String>,
}

/// `envoy.service.auth.v3.CheckRequest` (envoy/service/auth/v3/external_auth.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// `AttributeContext attributes = 1`
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.DeniedHttpResponse` (external_auth.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// `type.v3.HttpStatus status = 1`
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// `repeated config.core.v3.HeaderValueOption headers = 2`
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `string body = 3`
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.service.auth.v3.OkHttpResponse` (external_auth.proto). Not modelled:
/// `dynamic_metadata = 3`, query parameter mutations (7, 8).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// `repeated config.core.v3.HeaderValueOption headers = 2`
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `repeated string headers_to_remove = 5`
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
    /// `repeated config.core.v3.HeaderValueOption response_headers_to_add = 6`
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
}

/// `CheckResponse.http_response` oneof (external_auth.proto).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    /// `DeniedHttpResponse denied_response = 2`
    #[prost(message, tag = "2")]
    DeniedResponse(DeniedHttpResponse),
    /// `OkHttpResponse ok_response = 3`
    #[prost(message, tag = "3")]
    OkResponse(OkHttpResponse),
    /// `DeniedHttpResponse error_response = 5` (recent Envoy: an error, not a denial)
    #[prost(message, tag = "5")]
    ErrorResponse(DeniedHttpResponse),
}

/// `envoy.service.auth.v3.CheckResponse` (external_auth.proto). Not modelled:
/// `dynamic_metadata = 4`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `google.rpc.Status status = 1`
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(oneof = "HttpResponse", tags = "2, 3, 5")]
    pub http_response: Option<HttpResponse>,
}
