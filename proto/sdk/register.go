package sdk

import (
	"google.golang.org/grpc"

	pluginv1 "github.com/baiagent/baiagent/proto/gen/bai/plugin/v1"
)

// registerService registers impl's gRPC service on s.
func registerService(s *grpc.Server, impl Plugin) {
	pluginv1.RegisterComputePluginServiceServer(s, &grpcServer{impl: impl})
}
