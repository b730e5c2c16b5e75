// librdmacm and libibverbs as DEMCore's RDMA transport uses them (built with the RDMA trait only).
// Work requests, connection parameters and event fields are unions and macros in the headers;
// these wrappers give Swift plain functions of scalars for the few shapes the transport posts.
#ifndef DEM_CRDMA_SHIM_H
#define DEM_CRDMA_SHIM_H

#include <rdma/rdma_cma.h>
#include <infiniband/verbs.h>
#include <string.h>

static inline struct ibv_mr *crdma_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access) {
    return ibv_reg_mr(pd, addr, length, access);
}

static inline int crdma_poll_cq(struct ibv_cq *cq, int entries, struct ibv_wc *wc) {
    return ibv_poll_cq(cq, entries, wc);
}

static inline int crdma_req_notify_cq(struct ibv_cq *cq) {
    return ibv_req_notify_cq(cq, 0);
}

static inline int crdma_post_recv(struct ibv_qp *qp, uint64_t wr_id, void *addr, uint32_t length, uint32_t lkey) {
    struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = length, .lkey = lkey };
    struct ibv_recv_wr wr = { .wr_id = wr_id, .sg_list = &sge, .num_sge = 1 };
    struct ibv_recv_wr *bad = NULL;
    return ibv_post_recv(qp, &wr, &bad);
}

/// A signaled SEND of registered memory.
static inline int crdma_post_send(struct ibv_qp *qp, uint64_t wr_id, const void *addr, uint32_t length, uint32_t lkey) {
    struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = length, .lkey = lkey };
    struct ibv_send_wr wr;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    struct ibv_send_wr *bad = NULL;
    return ibv_post_send(qp, &wr, &bad);
}

/// A signaled RDMA READ (`write` 0) or RDMA WRITE (`write` 1) between local and remote memory.
static inline int crdma_post_rdma(struct ibv_qp *qp, uint64_t wr_id, int write, void *addr, uint32_t length,
                                  uint32_t lkey, uint64_t remote_addr, uint32_t rkey) {
    struct ibv_sge sge = { .addr = (uintptr_t)addr, .length = length, .lkey = lkey };
    struct ibv_send_wr wr;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote_addr;
    wr.wr.rdma.rkey = rkey;
    struct ibv_send_wr *bad = NULL;
    return ibv_post_send(qp, &wr, &bad);
}

static inline const void *crdma_event_private_data(const struct rdma_cm_event *event, uint8_t *length) {
    *length = event->param.conn.private_data_len;
    return event->param.conn.private_data;
}

/// The RDMA READs the peer offers to answer (`responder`) and to issue (`initiator`) at once.
static inline void crdma_event_read_depths(const struct rdma_cm_event *event, uint8_t *responder, uint8_t *initiator) {
    *responder = event->param.conn.responder_resources;
    *initiator = event->param.conn.initiator_depth;
}

static inline struct rdma_conn_param crdma_conn_param(const void *private_data, uint8_t length, uint8_t responder,
                                                      uint8_t initiator) {
    struct rdma_conn_param param;
    memset(&param, 0, sizeof param);
    param.private_data = private_data;
    param.private_data_len = length;
    param.responder_resources = responder;
    param.initiator_depth = initiator;
    param.flow_control = 1;
    param.retry_count = 7;
    param.rnr_retry_count = 7;
    return param;
}

#endif
