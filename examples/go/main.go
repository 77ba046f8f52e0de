// A minimal intercom-sidecar client: open EventService.Stream, send an identify and a track, print one ack per
// event, and exit 1 unless every ack is STATUS_ACCEPTED (2 when the call itself fails).
//
//	go run . [-target 127.0.0.1:50051] [-user-id user-42] [-traceparent 00-<trace>-<span>-01]
//
// Generate the stubs in gen/ first (see README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sidecarv1 "github.com/intercom-sidecar/intercom-sidecar/examples/go/gen/intercom_sidecar/v1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "the sidecar's gRPC address")
	userID := flag.String("user-id", "user-42", "the user id (Intercom external_id)")
	traceparent := flag.String("traceparent", "", "W3C traceparent: the events' spans become children of your span")
	flag.Parse()
	os.Exit(run(*target, *userID, *traceparent))
}

func run(target, userID, traceparent string) int {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "send: %s: %v\n", target, err)
		return 2
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-ack-mode", "accepted")
	if traceparent != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)
	}

	events, err := buildEvents(userID)
	if err != nil {
		fmt.Fprintf(os.Stderr, "send: %v\n", err)
		return 2
	}
	stream, err := sidecarv1.NewEventServiceClient(conn).Stream(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "send: %s: %v\n", target, err)
		return 2
	}
	for _, event := range events {
		if err := stream.Send(event); err != nil {
			break // the reason comes from Recv below
		}
	}
	if err := stream.CloseSend(); err != nil {
		fmt.Fprintf(os.Stderr, "send: %s: %v\n", target, err)
		return 2
	}

	// One Ack per Event, matched by message_id, in whatever order outcomes are known.
	accepted, received := 0, 0
	for {
		ack, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "send: %s: %v\n", target, err)
			return 2
		}
		received++
		if ack.GetStatus() == sidecarv1.Ack_STATUS_ACCEPTED {
			accepted++
		}
		status := strings.TrimPrefix(ack.GetStatus().String(), "STATUS_")
		fmt.Printf("%s\t%s\t%s\t%s\n", ack.GetMessageId(), status, ack.GetTraceId(), ack.GetReason())
	}
	if received != len(events) || accepted != len(events) {
		return 1
	}
	return 0
}

func buildEvents(userID string) ([]*sidecarv1.Event, error) {
	traits, err := structpb.NewStruct(map[string]any{"email": userID + "@example.com", "plan": "pro"})
	if err != nil {
		return nil, err
	}
	properties, err := structpb.NewStruct(map[string]any{"revenue": 19.99, "currency": "USD"})
	if err != nil {
		return nil, err
	}
	run := time.Now().UnixNano()
	now := timestamppb.Now()
	return []*sidecarv1.Event{
		{
			MessageId: fmt.Sprintf("go-identify-%d", run),
			UserId:    userID,
			Timestamp: now,
			Call:      &sidecarv1.Event_Identify{Identify: &sidecarv1.Identify{Traits: traits}},
		},
		{
			MessageId: fmt.Sprintf("go-track-%d", run),
			UserId:    userID,
			Timestamp: now,
			Call: &sidecarv1.Event_Track{
				Track: &sidecarv1.Track{Event: "Order Completed", Properties: properties},
			},
		},
	}, nil
}
