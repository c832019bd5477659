#include "control/grpc_service.h"

#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "control/proto_convert.h"

namespace lb::control {
namespace {

// Writes a Service result or returns the error.
grpc::Status Reply(const absl::StatusOr<Service>& result, lb::v1::Service* out) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *out = ToProto(*result);
  return grpc::Status::OK;
}

// A backend named by (service, address, port), as RemoveBackend and UpdateBackend name it.
struct BackendRef {
  ServiceId service;
  IpAddress address;
  uint16_t port;
};

absl::StatusOr<BackendRef> ParseBackendRef(const lb::v1::ServiceKey& key, const std::string& address, uint32_t port) {
  auto id = FromProto(key, "key");
  if (!id.ok()) return id.status();
  auto a = ParseAddress(address, "address");
  if (!a.ok()) return a.status();
  auto p = ParsePort(port, "port");
  if (!p.ok()) return p.status();
  return BackendRef{*id, *a, *p};
}

void AddCounter(google::protobuf::RepeatedPtrField<lb::v1::Counter>* list, std::string_view name, uint64_t value) {
  lb::v1::Counter* c = list->Add();
  c->set_name(std::string(name));
  c->set_value(value);
}

// `status` with its leading "services[from]" renamed "services[to]".
absl::Status RenumberField(const absl::Status& status, int32_t from, int32_t to) {
  const std::string prefix = absl::StrFormat("services[%d]", from);
  if (from == to || !absl::StartsWith(status.message(), prefix)) return status;
  return absl::Status(status.code(), absl::StrFormat("services[%d]%s", to, status.message().substr(prefix.size())));
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode are both the canonical codes, value for value.
  return grpc::Status(grpc::StatusCode(int(status.code())), std::string(status.message()));
}

grpc::Status LoadBalancerService::CreateService(grpc::ServerContext*, const lb::v1::CreateServiceRequest* req,
                                                lb::v1::Service* out) {
  auto config = FromProto(req->service(), "service");
  if (!config.ok()) return ToGrpcStatus(config.status());
  return Reply(core_->CreateService(*config), out);
}

grpc::Status LoadBalancerService::UpdateService(grpc::ServerContext*, const lb::v1::UpdateServiceRequest* req,
                                                lb::v1::Service* out) {
  auto config = FromProto(req->service(), "service");
  if (!config.ok()) return ToGrpcStatus(config.status());
  return Reply(core_->UpdateService(*config, /*keep_backends=*/req->service().backends().empty()), out);
}

grpc::Status LoadBalancerService::DeleteService(grpc::ServerContext*, const lb::v1::DeleteServiceRequest* req,
                                                lb::v1::DeleteServiceResponse*) {
  auto id = FromProto(req->key(), "key");
  if (!id.ok()) return ToGrpcStatus(id.status());
  return ToGrpcStatus(core_->DeleteService(*id));
}

grpc::Status LoadBalancerService::GetService(grpc::ServerContext*, const lb::v1::GetServiceRequest* req,
                                             lb::v1::Service* out) {
  auto id = FromProto(req->key(), "key");
  if (!id.ok()) return ToGrpcStatus(id.status());
  return Reply(core_->GetService(*id), out);
}

grpc::Status LoadBalancerService::ListServices(grpc::ServerContext*, const lb::v1::ListServicesRequest*,
                                               lb::v1::ListServicesResponse* out) {
  for (const control::Service& s : core_->ListServices()) *out->add_services() = ToProto(s);
  return grpc::Status::OK;
}

grpc::Status LoadBalancerService::SetBackends(grpc::ServerContext*, const lb::v1::SetBackendsRequest* req,
                                              lb::v1::Service* out) {
  auto id = FromProto(req->key(), "key");
  if (!id.ok()) return ToGrpcStatus(id.status());
  std::vector<BackendConfig> backends;
  for (int i = 0; i < req->backends_size(); ++i) {
    auto b = FromProto(req->backends(i), absl::StrFormat("backends[%d]", i));
    if (!b.ok()) return ToGrpcStatus(b.status());
    backends.push_back(*b);
  }
  return Reply(core_->SetBackends(*id, backends), out);
}

grpc::Status LoadBalancerService::AddBackend(grpc::ServerContext*, const lb::v1::AddBackendRequest* req,
                                             lb::v1::Service* out) {
  auto id = FromProto(req->key(), "key");
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto b = FromProto(req->backend(), "backend");
  if (!b.ok()) return ToGrpcStatus(b.status());
  return Reply(core_->AddBackend(*id, *b), out);
}

grpc::Status LoadBalancerService::RemoveBackend(grpc::ServerContext*, const lb::v1::RemoveBackendRequest* req,
                                                lb::v1::Service* out) {
  auto ref = ParseBackendRef(req->key(), req->address(), req->port());
  if (!ref.ok()) return ToGrpcStatus(ref.status());
  return Reply(core_->RemoveBackend(ref->service, ref->address, ref->port), out);
}

grpc::Status LoadBalancerService::UpdateBackend(grpc::ServerContext*, const lb::v1::UpdateBackendRequest* req,
                                                lb::v1::Service* out) {
  auto ref = ParseBackendRef(req->key(), req->address(), req->port());
  if (!ref.ok()) return ToGrpcStatus(ref.status());
  BackendUpdate update;
  if (req->has_weight()) update.weight = req->weight();
  if (req->has_state()) {
    auto state = FromProto(req->state(), "state");
    if (!state.ok()) return ToGrpcStatus(state.status());
    update.state = *state;
  }
  if (!update.weight && !update.state) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "weight, state: give at least one");
  }
  return Reply(core_->UpdateBackend(ref->service, ref->address, ref->port, update), out);
}

grpc::Status LoadBalancerService::Apply(grpc::ServerContext*, const lb::v1::ApplyRequest* req,
                                        lb::v1::ApplyResponse* out) {
  // A service whose wire form does not parse is refused like one that fails validation:
  // alone when the request is partial. It is left out of what the core sees, so the
  // core's indexes are mapped back to the request's.
  std::vector<ServiceConfig> services;
  std::vector<int32_t> request_index;
  std::vector<ServiceOutcome> unparsed;
  services.reserve(req->services_size());
  for (int i = 0; i < req->services_size(); ++i) {
    auto s = FromProto(req->services(i), absl::StrFormat("services[%d]", i));
    if (!s.ok()) {
      if (!req->partial()) return ToGrpcStatus(s.status());
      auto key = FromProto(req->services(i).key(), absl::StrFormat("services[%d].key", i));
      unparsed.push_back({ServiceOutcome::Kind::kRefused, key.ok() ? *key : ServiceId{}, i, s.status()});
      continue;
    }
    services.push_back(*std::move(s));
    request_index.push_back(i);
  }
  auto result = core_->Apply(req->generation(), services, req->partial());
  if (!result.ok()) return ToGrpcStatus(result.status());
  out->set_generation(result->generation);
  out->set_created(result->created);
  out->set_updated(result->updated);
  out->set_deleted(result->deleted);
  out->set_unchanged(result->unchanged);
  out->set_refused(result->refused + uint32_t(unparsed.size()));
  for (ServiceOutcome o : result->outcomes) {
    if (o.index >= 0) {
      o.status = RenumberField(o.status, o.index, request_index[size_t(o.index)]);
      o.index = request_index[size_t(o.index)];
    }
    *out->add_results() = ToProto(o);
  }
  for (const ServiceOutcome& o : unparsed) *out->add_results() = ToProto(o);
  return grpc::Status::OK;
}

grpc::Status LoadBalancerService::GetStats(grpc::ServerContext*, const lb::v1::GetStatsRequest* req,
                                           lb::v1::Stats* out) {
  StatsQuery query{.top_backends = req->top_backends()};
  if (req->has_service()) {
    auto id = FromProto(req->service(), "service");
    if (!id.ok()) return ToGrpcStatus(id.status());
    query.service = *id;
  }
  const Stats stats = core_->GetStats(query);
  if (query.service && stats.services.empty()) {
    return ToGrpcStatus(absl::NotFoundError(absl::StrFormat("service %s does not exist", query.service->ToString())));
  }
  for (size_t i = 0; i < dataplane::kNumEvents; ++i) {
    AddCounter(out->mutable_events(), dataplane::kEventInfo[i].name, stats.events[i]);
  }
  for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
    AddCounter(out->mutable_drops(), dataplane::kDropReasonInfo[i].name, stats.drops[i]);
  }
  for (const WorkerView& w : stats.workers) {
    lb::v1::WorkerStats* ws = out->add_workers();
    ws->set_worker(w.id);
    ws->set_lcore(w.lcore);
    ws->set_flows(w.flows);
    ws->set_flow_capacity(w.flow_capacity);
    for (size_t i = 0; i < dataplane::kNumEvents; ++i) {
      AddCounter(ws->mutable_events(), dataplane::kEventInfo[i].name, w.counters->Get(dataplane::Event(i)));
    }
    for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
      AddCounter(ws->mutable_drops(), dataplane::kDropReasonInfo[i].name, w.counters->Get(dataplane::DropReason(i)));
    }
  }
  for (const Stats::ServiceStats& s : stats.services) {
    lb::v1::ServiceStats* ss = out->add_services();
    *ss->mutable_key() = ToProto(IdOf(s.service.config));
    ss->set_packets(s.traffic.packets);
    ss->set_bytes(s.traffic.bytes);
    ss->set_new_flows(s.traffic.new_flows);
    ss->set_drops(s.traffic.drops);
    ss->set_backends_total(uint32_t(s.service.config.backends.size()));
    for (const Stats::BackendStats& b : s.backends) {
      const BackendConfig& c = s.service.config.backends[b.index];
      lb::v1::BackendStats* bs = ss->add_backends();
      bs->set_address(c.address.ToString());
      bs->set_port(c.port);
      bs->set_state(ToProto(c.state));
      bs->set_maglev_entries(b.maglev_entries);
      bs->set_next_hop(b.neighbor_mac ? MacToString(*b.neighbor_mac) : "gateway");
      bs->set_packets(b.traffic.packets);
      bs->set_bytes(b.traffic.bytes);
    }
  }
  out->set_traffic_uncounted(stats.traffic_uncounted);
  out->set_flows(stats.flows);
  out->set_flow_capacity(stats.flow_capacity);
  out->set_generation(stats.generation);
  out->set_backends(stats.backends);
  out->set_table_memory_bytes(stats.table_memory);
  out->set_table_memory_limit(stats.table_memory_limit);
  if (const auto& s = stats.flow_sync) {
    lb::v1::FlowSyncStats* o = out->mutable_flow_sync();
    for (const std::string& p : s->peers) o->add_peers(p);
    o->set_datagrams_sent(s->datagrams_sent);
    o->set_flows_sent(s->flows_sent);
    o->set_bytes_sent(s->bytes_sent);
    o->set_send_errors(s->send_errors);
    o->set_datagrams_received(s->datagrams_received);
    o->set_flows_received(s->flows_received);
    o->set_datagrams_rejected(s->datagrams_rejected);
    o->set_flows_undelivered(s->flows_undelivered);
    o->set_dumps_sent(s->dumps_sent);
    o->set_journal_flows(s->journal_flows);
    o->set_journal_full(s->journal_full);
    o->set_datagrams_replayed(s->datagrams_replayed);
    o->set_datagrams_stale(s->datagrams_stale);
    o->set_dump_requests_refused(s->dump_requests_refused);
    o->set_flows_over_budget(s->flows_over_budget);
    o->set_sessions_refused(s->sessions_refused);
    for (const FlowSyncView::Peer& p : s->peer_stats) {
      lb::v1::FlowSyncPeerStats* ps = o->add_peer_stats();
      ps->set_address(p.address);
      ps->set_datagrams(p.datagrams);
      ps->set_flows_learned(p.flows_learned);
      ps->set_datagrams_rejected(p.datagrams_rejected);
      ps->set_flows_refused(p.flows_refused);
      ps->set_last_heard_unix_ms(p.last_heard_unix_ms);
      ps->set_delay_us(p.delay_us);
    }
  }
  for (const PortView& p : stats.ports) {
    lb::v1::PortStats* o = out->add_ports();
    o->set_name(p.name);
    o->set_role(p.role);
    o->set_driver(p.driver);
    o->set_link_up(p.link_up);
    o->set_rx_packets(p.counters.rx_packets);
    o->set_tx_packets(p.counters.tx_packets);
    o->set_rx_bytes(p.counters.rx_bytes);
    o->set_tx_bytes(p.counters.tx_bytes);
    o->set_rx_missed(p.counters.rx_missed);
    o->set_rx_errors(p.counters.rx_errors);
    o->set_tx_errors(p.counters.tx_errors);
    o->set_rx_nombuf(p.counters.rx_nombuf);
  }
  for (const Stats::SnatStats& snat : stats.snat) {
    lb::v1::SnatAddressStats* o = out->add_snat();
    o->set_address(snat.address.ToString());
    o->set_ports_in_use(snat.ports_in_use);
    o->set_ports_total(snat.ports_total);
  }
  return grpc::Status::OK;
}

grpc::Status LoadBalancerService::GetHealth(grpc::ServerContext*, const lb::v1::GetHealthRequest*,
                                            lb::v1::Health* out) {
  const Health h = core_->GetHealth();
  out->set_healthy(h.healthy);
  for (const auto& p : h.problems) out->add_problems(p);
  out->set_workers(h.workers);
  out->set_workers_alive(h.workers_alive);
  out->set_links_up(h.links_up);
  out->set_drained(h.drained);
  out->set_generation(h.generation);
  out->set_snapshot_generation(h.snapshot_generation);
  out->set_snapshot_visible(h.snapshot_visible);
  out->set_flow_hash(h.flow_hash);
  return grpc::Status::OK;
}

grpc::Status LoadBalancerService::SetDrain(grpc::ServerContext* ctx, const lb::v1::SetDrainRequest* req,
                                           lb::v1::Health* out) {
  if (absl::Status s = core_->SetDrained(req->drained()); !s.ok()) return ToGrpcStatus(s);
  return GetHealth(ctx, nullptr, out);
}

grpc::Status LoadBalancerService::ExplainFlow(grpc::ServerContext*, const lb::v1::ExplainFlowRequest* req,
                                              lb::v1::ExplainFlowResponse* out) {
  FlowKey key;
  if (req->protocol() != lb::v1::TCP && req->protocol() != lb::v1::UDP) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "protocol: must be TCP or UDP");
  }
  auto src = ParseAddress(req->source(), "source");
  if (!src.ok()) return ToGrpcStatus(src.status());
  auto dst = ParseAddress(req->destination(), "destination");
  if (!dst.ok()) return ToGrpcStatus(dst.status());
  if (src->IsV4() != dst->IsV4()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "source, destination: must be of the same address family");
  }
  auto sport = ParsePort(req->source_port(), "source_port");
  if (!sport.ok()) return ToGrpcStatus(sport.status());
  auto dport = ParsePort(req->destination_port(), "destination_port");
  if (!dport.ok()) return ToGrpcStatus(dport.status());
  key.src = *src;
  key.dst = *dst;
  key.src_port_be = htons(*sport);
  key.dst_port_be = htons(*dport);
  key.protocol = uint8_t(req->protocol());
  auto e = core_->ExplainFlow(key);
  if (!e.ok()) return ToGrpcStatus(e.status());
  out->set_vip(e->vip);
  if (e->service) *out->mutable_service() = ToProto(*e->service);
  if (e->backend) *out->mutable_backend() = ToProto(*e->backend);
  if (e->maglev_backend) *out->mutable_maglev_backend() = ToProto(*e->maglev_backend);
  out->set_decision(e->decision);
  out->set_worker(e->worker);
  return grpc::Status::OK;
}

}  // namespace lb::control
