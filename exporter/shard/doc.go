// Package shard computes the shard selectors of the API server's alpha
// ShardedListAndWatch feature (KEP-5866; feature gate ShardedListAndWatch,
// alpha and off by default since Kubernetes 1.36), which lets replicas of
// kubefeed split a resource between them (issue 23).
//
// A LIST or WATCH request carries the selector in the query parameter
// shardSelector (metav1.ListOptions.ShardSelector), for example
//
//	shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')
//
// and the API server returns only the objects whose hash falls in
// [start, end). The hash is the 64-bit FNV-1a of the bytes of the uid string
// (Hash). Both bounds are single-quoted, "0x" followed by exactly 16
// lowercase hex digits; the only other value is the exclusive end of the hash
// space, '0x10000000000000000' (2^64). A list response that the selector was
// applied to echoes it in metadata.shardInfo.selector
// (metav1.ListMeta.ShardInfo), in the same text as Selector writes it. An API
// server without the gate ignores the parameter: it returns every object and
// no shardInfo, so a client must check shardInfo before it trusts a list to
// be one shard only. Watches apply the selector too but have no such echo.
//
// The API server's code is k8s.io/apimachinery/pkg/sharding (the hash and
// the match) and k8s.io/apiserver/pkg/sharding (the parser).
package shard
