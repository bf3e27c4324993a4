-- SPDX-License-Identifier: Apache-2.0
-- moonstack.etcd: the etcd v3 client (moonstack.etcd.client) — `require('moonstack.etcd').new
-- (opts)`; leases and locks in moonstack.etcd.lease, the polling watch in moonstack.etcd.watch.
return require('moonstack.etcd.client')
