// The lb.v1.LoadBalancer gRPC service: translates each request into one ControlCore
// call and its result back. Thread model: gRPC's threads; the core serialises.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "control/control_core.h"
#include "lb/v1/lb.grpc.pb.h"

namespace lb::control {

// The one mapping of absl::Status onto gRPC status codes (they share the canonical codes).
grpc::Status ToGrpcStatus(const absl::Status& status);

class LoadBalancerService final : public lb::v1::LoadBalancer::Service {
 public:
  explicit LoadBalancerService(ControlCore* core) : core_(core) {}

  grpc::Status CreateService(grpc::ServerContext*, const lb::v1::CreateServiceRequest*, lb::v1::Service*) override;
  grpc::Status UpdateService(grpc::ServerContext*, const lb::v1::UpdateServiceRequest*, lb::v1::Service*) override;
  grpc::Status DeleteService(grpc::ServerContext*, const lb::v1::DeleteServiceRequest*,
                             lb::v1::DeleteServiceResponse*) override;
  grpc::Status GetService(grpc::ServerContext*, const lb::v1::GetServiceRequest*, lb::v1::Service*) override;
  grpc::Status ListServices(grpc::ServerContext*, const lb::v1::ListServicesRequest*,
                            lb::v1::ListServicesResponse*) override;
  grpc::Status SetBackends(grpc::ServerContext*, const lb::v1::SetBackendsRequest*, lb::v1::Service*) override;
  grpc::Status AddBackend(grpc::ServerContext*, const lb::v1::AddBackendRequest*, lb::v1::Service*) override;
  grpc::Status RemoveBackend(grpc::ServerContext*, const lb::v1::RemoveBackendRequest*, lb::v1::Service*) override;
  grpc::Status UpdateBackend(grpc::ServerContext*, const lb::v1::UpdateBackendRequest*, lb::v1::Service*) override;
  grpc::Status Apply(grpc::ServerContext*, const lb::v1::ApplyRequest*, lb::v1::ApplyResponse*) override;
  grpc::Status GetStats(grpc::ServerContext*, const lb::v1::GetStatsRequest*, lb::v1::Stats*) override;
  grpc::Status GetHealth(grpc::ServerContext*, const lb::v1::GetHealthRequest*, lb::v1::Health*) override;
  grpc::Status SetDrain(grpc::ServerContext*, const lb::v1::SetDrainRequest*, lb::v1::Health*) override;
  grpc::Status ExplainFlow(grpc::ServerContext*, const lb::v1::ExplainFlowRequest*,
                           lb::v1::ExplainFlowResponse*) override;

 private:
  ControlCore* core_;
};

}  // namespace lb::control
