package etcd

import "context"

// The key-value calls: /v3/kv/range, put, deleterange and txn. The JSON
// names are those of etcd's rpc.proto messages.

// KeyValue is one key as etcd holds it.
type KeyValue struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision int64  `json:"create_revision,string"`
	ModRevision    int64  `json:"mod_revision,string"`
	Version        int64  `json:"version,string"`
	Lease          int64  `json:"lease,string"`
}

// Header is what every answer carries; the fleet uses its revision.
type Header struct {
	Revision int64 `json:"revision,string"`
}

// RangeResponse is the answer to a range read.
type RangeResponse struct {
	Header Header     `json:"header"`
	Kvs    []KeyValue `json:"kvs"`
}

// LeaseID is a lease; 0 is none.
type LeaseID int64

type rangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitzero"`
	KeysOnly bool   `json:"keys_only,omitzero"`
}

type putRequest struct {
	Key   []byte  `json:"key"`
	Value []byte  `json:"value,omitzero"`
	Lease LeaseID `json:"lease,omitzero,string"`
}

type deleteRequest struct {
	Key []byte `json:"key"`
}

// PrefixEnd is the end of the range of every key that starts with prefix:
// the prefix with its last byte incremented (etcd's clientv3.GetPrefixRangeEnd).
func PrefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0} // every key
}

// Prefix reads every key starting with prefix, in key order; with
// keysOnly, without their values.
func (c *Client) Prefix(ctx context.Context, prefix string, keysOnly bool) (*RangeResponse, error) {
	resp := new(RangeResponse)
	err := c.call(ctx, "/v3/kv/range", rangeRequest{Key: []byte(prefix), RangeEnd: PrefixEnd(prefix), KeysOnly: keysOnly}, resp, Hedge)
	return resp, err
}

// Put writes key, under lease unless it is 0.
func (c *Client) Put(ctx context.Context, key, value string, lease LeaseID) error {
	return c.call(ctx, "/v3/kv/put", putRequest{Key: []byte(key), Value: []byte(value), Lease: lease}, new(struct{}), 0)
}

// Op is one operation of a transaction.
type Op struct {
	Put    *putRequest    `json:"request_put,omitzero"`
	Delete *deleteRequest `json:"request_delete_range,omitzero"`
	Range  *rangeRequest  `json:"request_range,omitzero"`
}

// OpPut writes key, under lease unless it is 0.
func OpPut(key, value string, lease LeaseID) Op {
	return Op{Put: &putRequest{Key: []byte(key), Value: []byte(value), Lease: lease}}
}

// OpDelete deletes key.
func OpDelete(key string) Op { return Op{Delete: &deleteRequest{Key: []byte(key)}} }

// OpGet reads key.
func OpGet(key string) Op { return Op{Range: &rangeRequest{Key: []byte(key)}} }

// Compare is a transaction's condition on one key. Each sets one of the
// target's fields: a field left out compares with its zero value, which is
// what etcd does with a field not sent.
type Compare struct {
	Target         string `json:"target"` // VALUE or CREATE
	Result         string `json:"result"` // EQUAL
	Key            []byte `json:"key"`
	Value          []byte `json:"value,omitzero"`
	CreateRevision int64  `json:"create_revision,omitzero,string"`
}

// ValueIs holds when key's value is value.
func ValueIs(key, value string) Compare {
	return Compare{Target: "VALUE", Result: "EQUAL", Key: []byte(key), Value: []byte(value)}
}

// Missing holds when key does not exist (it was never created).
func Missing(key string) Compare {
	return Compare{Target: "CREATE", Result: "EQUAL", Key: []byte(key)}
}

// TxnResponse is a transaction's answer: which branch ran, and the answer
// of each of its operations (ranges only are read here).
type TxnResponse struct {
	Header    Header `json:"header"`
	Succeeded bool   `json:"succeeded"`
	Responses []struct {
		Range *RangeResponse `json:"response_range"`
	} `json:"responses"`
}

type txnRequest struct {
	Compare []Compare `json:"compare"`
	Success []Op      `json:"success"`
	Failure []Op      `json:"failure,omitzero"`
}

// Txn runs then if every condition in cond holds, otherwise orElse, as one
// transaction.
func (c *Client) Txn(ctx context.Context, cond []Compare, then, orElse []Op) (*TxnResponse, error) {
	resp := new(TxnResponse)
	err := c.call(ctx, "/v3/kv/txn", txnRequest{Compare: cond, Success: then, Failure: orElse}, resp, 0)
	return resp, err
}
