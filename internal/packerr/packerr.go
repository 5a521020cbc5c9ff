// Package packerr carries error identity across the host/pack process
// boundary. A pack returns one of the sentinels below (the SDK re-exports
// them); the SDK's gRPC server turns it into a status with an ErrorDetail,
// and the host's client turns that back into an *Error that matches the same
// sentinel with errors.Is.
package packerr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/packhost/packhost/internal/packpb"
)

// The sentinels. Each names who returns it and what the caller does next.
var (
	// ErrDowngrade: CheckSchema or Upgrade found a table whose installed
	// version is newer than the pack's code. The host refuses to upgrade
	// past it (exit 5); the operator installs the newer pack again or
	// restores a matching backup.
	ErrDowngrade = errors.New("installed table version is newer than the code (downgrade)")

	// ErrDrift: a table's live schema matches no registered version. The
	// host refuses to upgrade it (exit 5); the operator compares the diff
	// and fixes the table by hand or restores a backup.
	ErrDrift = errors.New("live schema matches no registered version (drift)")

	// ErrVersionMismatch: the live schema matches a registered version other
	// than the stored one. `host db repair` records the real version.
	ErrVersionMismatch = errors.New("live schema matches another registered version than the stored one")

	// ErrStepFailed: an upgrade step returned an error or panicked. Its
	// transaction was rolled back: table, version and registry are as
	// before the step. The message names pack, table and step.
	ErrStepFailed = errors.New("upgrade step failed")

	// ErrNoDatabase: the pack was asked for database work but the host
	// handed it no database.
	ErrNoDatabase = errors.New("no database was handed to the pack")

	// ErrNotSupported: the pack does not implement the requested optional
	// capability (for example it serves no pages).
	ErrNotSupported = errors.New("not supported by this pack")

	// ErrInvalidArgument: the request was malformed (unknown table, bad
	// path). The caller fixes the request.
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrBackupInvalid: a backup failed verification (missing file, wrong
	// checksum or row count). Nothing was restored.
	ErrBackupInvalid = errors.New("backup failed verification")

	// ErrUnknownTable: a request named a table the pack does not own.
	ErrUnknownTable = errors.New("unknown table")
)

var codeOf = map[error]packpb.ErrorCode{
	ErrDowngrade:       packpb.ErrorCode_ERROR_CODE_DOWNGRADE,
	ErrDrift:           packpb.ErrorCode_ERROR_CODE_DRIFT,
	ErrVersionMismatch: packpb.ErrorCode_ERROR_CODE_VERSION_MISMATCH,
	ErrStepFailed:      packpb.ErrorCode_ERROR_CODE_STEP_FAILED,
	ErrNoDatabase:      packpb.ErrorCode_ERROR_CODE_NO_DATABASE,
	ErrNotSupported:    packpb.ErrorCode_ERROR_CODE_NOT_SUPPORTED,
	ErrInvalidArgument: packpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
	ErrBackupInvalid:   packpb.ErrorCode_ERROR_CODE_BACKUP_INVALID,
	ErrUnknownTable:    packpb.ErrorCode_ERROR_CODE_UNKNOWN_TABLE,
}

// Error is an error that crossed the process boundary, or one a pack builds
// to give context (pack, table, step) to a sentinel.
type Error struct {
	Code   packpb.ErrorCode
	PackID string
	Table  string
	StepTo int32
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel for the error's code, so errors.Is works.
func (e *Error) Unwrap() error {
	for sentinel, code := range codeOf {
		if code == e.Code {
			return sentinel
		}
	}
	return nil
}

// Code returns the wire code of err: the code of the first sentinel it wraps,
// or ERROR_CODE_INTERNAL.
func Code(err error) packpb.ErrorCode {
	var pe *Error
	if errors.As(err, &pe) && pe.Code != packpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return pe.Code
	}
	for sentinel, code := range codeOf {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return packpb.ErrorCode_ERROR_CODE_INTERNAL
}

// ToStatus turns an error returned by pack code into a gRPC status error
// carrying its code and context.
func ToStatus(packID string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		if s, _ := status.FromError(err); len(s.Details()) > 0 {
			return err
		}
	}
	d := &packpb.ErrorDetail{Code: Code(err), PackId: packID, Message: err.Error()}
	var pe *Error
	if errors.As(err, &pe) {
		d.Table, d.StepTo = pe.Table, pe.StepTo
		if pe.PackID != "" {
			d.PackId = pe.PackID
		}
	}
	gc := codes.Unknown
	switch d.Code {
	case packpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, packpb.ErrorCode_ERROR_CODE_UNKNOWN_TABLE:
		gc = codes.InvalidArgument
	case packpb.ErrorCode_ERROR_CODE_NOT_SUPPORTED:
		gc = codes.Unimplemented
	case packpb.ErrorCode_ERROR_CODE_DOWNGRADE, packpb.ErrorCode_ERROR_CODE_DRIFT, packpb.ErrorCode_ERROR_CODE_VERSION_MISMATCH:
		gc = codes.FailedPrecondition
	case packpb.ErrorCode_ERROR_CODE_STEP_FAILED:
		gc = codes.Aborted
	case packpb.ErrorCode_ERROR_CODE_NO_DATABASE:
		gc = codes.Unavailable
	case packpb.ErrorCode_ERROR_CODE_BACKUP_INVALID:
		gc = codes.DataLoss
	}
	s, serr := status.New(gc, d.Message).WithDetails(d)
	if serr != nil {
		return status.Error(gc, d.Message)
	}
	return s.Err()
}

// FromStatus turns an error received from a pack back into an *Error that
// matches the sentinel it was made from. Errors without details (transport
// failures, a crashed pack) are returned wrapped as they are.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range s.Details() {
		if ed, ok := d.(*packpb.ErrorDetail); ok {
			return &Error{Code: ed.Code, PackID: ed.PackId, Table: ed.Table, StepTo: ed.StepTo, Msg: ed.Message}
		}
	}
	switch s.Code() {
	case codes.Unavailable:
		return fmt.Errorf("pack unreachable: %s", s.Message())
	case codes.Canceled:
		return fmt.Errorf("%s: %w", s.Message(), context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", s.Message(), context.DeadlineExceeded)
	}
	return errors.New(s.Message())
}
