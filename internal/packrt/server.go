package packrt

import (
	"context"

	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
)

// server adapts the runtime to the generated gRPC service. Every method
// passes the request's context through, so a host that cancels reaches the
// pack's work.
type server struct {
	packpb.UnimplementedPackServer
	rt *runtime
}

func (s *server) fail(err error) error { return packerr.ToStatus(s.rt.pack.ID, err) }

func (s *server) Describe(ctx context.Context, _ *packpb.DescribeRequest) (*packpb.DescribeResponse, error) {
	p := s.rt.pack
	resp := &packpb.DescribeResponse{
		Id: p.ID, Version: p.Version, Description: p.Description,
		DependsOn: p.DependsOn, SdkVersion: SDKVersion, Reads: p.Reads,
	}
	for _, t := range p.Tables {
		ti := &packpb.TableInfo{Name: t.Name, CodeVersion: int32(t.Version()), HasCreate: t.Create != nil}
		for i, st := range t.Steps {
			ti.Steps = append(ti.Steps, &packpb.StepInfo{To: int32(i + 1), Summary: st.Summary, Destructive: st.Destructive})
		}
		resp.Tables = append(resp.Tables, ti)
	}
	if p.Pages != nil {
		resp.Capabilities = append(resp.Capabilities, "http")
		resp.HttpPrefix = p.PagePrefix()
	}
	return resp, nil
}

func (s *server) CheckSchema(ctx context.Context, req *packpb.CheckSchemaRequest) (*packpb.CheckSchemaResponse, error) {
	tables, err := s.rt.check(ctx, req.GetTables())
	if err != nil {
		return nil, s.fail(err)
	}
	return &packpb.CheckSchemaResponse{Tables: tables}, nil
}

func (s *server) Upgrade(req *packpb.UpgradeRequest, stream packpb.Pack_UpgradeServer) error {
	err := s.rt.upgrade(stream.Context(), req.GetTables(), stream.Send)
	return s.fail(err)
}

func (s *server) Repair(ctx context.Context, req *packpb.RepairRequest) (*packpb.RepairResponse, error) {
	tables, err := s.rt.repair(ctx, req.GetTables())
	if err != nil {
		return nil, s.fail(err)
	}
	return &packpb.RepairResponse{Tables: tables}, nil
}

func (s *server) Backup(req *packpb.BackupRequest, stream packpb.Pack_BackupServer) error {
	return s.fail(s.rt.backup(stream.Context(), req, stream.Send))
}

func (s *server) Restore(req *packpb.RestoreRequest, stream packpb.Pack_RestoreServer) error {
	return s.fail(s.rt.restore(stream.Context(), req, stream.Send))
}

func (s *server) History(ctx context.Context, req *packpb.HistoryRequest) (*packpb.HistoryResponse, error) {
	resp, err := s.rt.historyResponse(ctx, req.GetDialects())
	if err != nil {
		return nil, s.fail(err)
	}
	return resp, nil
}
