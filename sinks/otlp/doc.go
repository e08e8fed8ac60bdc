// Package otlp is the OpenTelemetry sink: it exports changes as OTLP log
// records, over gRPC or HTTP/protobuf, to an OpenTelemetry Collector or any
// OTLP receiver, at least once. It builds requests with the Collector's own
// pdata (plog, plogotlp), so the receiver's partial success is read, not
// ignored.
//
// Shapes (encode.go), chosen per sink:
//   - k8sobjects: what the Collector's k8sobjects receiver emits in watch
//     mode: body {type: ADDED|MODIFIED|DELETED, object}, k8s.namespace.name
//     on the resource, k8s.resource.name, event.domain k8s and event.name
//     the object's name, the receiver's instrumentation scope name;
//   - entity: OpenTelemetry entity events: entity.state (entity.type such as
//     k8s.pod, entity.id {k8s.pod.uid}, entity.description, ownerReferences
//     as part_of relationships) and entity.delete, the object as the body.
//
// Both carry the event's id, source, type and subject (cloudevents.*), and
// kubefeed's patch, changed paths, versions and recovered flag
// (kubefeed.*); a gap marker is a WARN record named kubefeed.gap. Timestamp
// and ObservedTimestamp are the event's time. Redaction happened before
// the sink: it sends what every sink sends.
//
// Delivery (batch.go, errors.go): up to batch records per request within
// maxRequestBytes, maxInFlight requests at once (sinks.Window). Retryable
// and permanent failures follow the OTLP specification (errors.go), and
// RetryInfo and Retry-After are honoured through sinks.RetryAfter. An
// object is acknowledged only when its request was accepted without
// rejections; a partial success that rejected records fails them: alone in
// its request the object fails permanently, among others every object of
// the request is sent again in a request of its own, which then tells
// which were rejected.
package otlp
