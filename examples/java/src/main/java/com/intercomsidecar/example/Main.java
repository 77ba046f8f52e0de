package com.intercomsidecar.example;

import com.google.protobuf.Struct;
import com.google.protobuf.Timestamp;
import com.google.protobuf.Value;
import com.intercomsidecar.v1.Ack;
import com.intercomsidecar.v1.Event;
import com.intercomsidecar.v1.EventServiceGrpc;
import com.intercomsidecar.v1.Identify;
import com.intercomsidecar.v1.Track;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A minimal intercom-sidecar client: open EventService.Stream, send an identify and a track, print one ack per
 * event, and exit 1 unless every ack is STATUS_ACCEPTED (2 when the call itself fails).
 *
 * <p>Arguments: [--target 127.0.0.1:50051] [--user-id user-42] [--traceparent 00-&lt;trace&gt;-&lt;span&gt;-01]
 */
public final class Main {
  private static final Metadata.Key<String> ACK_MODE =
      Metadata.Key.of("x-ack-mode", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> TRACEPARENT =
      Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);

  private Main() {}

  public static void main(String[] args) throws InterruptedException {
    String target = "127.0.0.1:50051";
    String userId = "user-42";
    String traceparent = "";
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--target" -> target = args[i + 1];
        case "--user-id" -> userId = args[i + 1];
        case "--traceparent" -> traceparent = args[i + 1];
        default -> {
          System.err.println("send: unknown option " + args[i]);
          System.exit(2);
        }
      }
    }
    System.exit(run(target, userId, traceparent));
  }

  static int run(String target, String userId, String traceparent) throws InterruptedException {
    ManagedChannel channel = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();
    try {
      Metadata headers = new Metadata();
      headers.put(ACK_MODE, "accepted");
      if (!traceparent.isEmpty()) {
        headers.put(TRACEPARENT, traceparent); // W3C trace context: the events' spans continue your trace
      }
      EventServiceGrpc.EventServiceStub stub =
          EventServiceGrpc.newStub(channel)
              .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers))
              .withDeadlineAfter(30, TimeUnit.SECONDS);

      List<Event> events = events(userId);
      List<Ack> acks = new ArrayList<>();
      Throwable[] failure = new Throwable[1];
      CountDownLatch done = new CountDownLatch(1);
      // One Ack per Event, matched by message_id, in whatever order outcomes are known.
      StreamObserver<Event> requests =
          stub.stream(
              new StreamObserver<Ack>() {
                @Override
                public void onNext(Ack ack) {
                  synchronized (acks) {
                    acks.add(ack);
                  }
                  System.out.printf(
                      "%s\t%s\t%s\t%s%n",
                      ack.getMessageId(),
                      ack.getStatus().name().replaceFirst("^STATUS_", ""),
                      ack.getTraceId(),
                      ack.getReason());
                }

                @Override
                public void onError(Throwable error) {
                  failure[0] = error;
                  done.countDown();
                }

                @Override
                public void onCompleted() {
                  done.countDown();
                }
              });
      for (Event event : events) {
        requests.onNext(event);
      }
      requests.onCompleted(); // half-close: the sidecar answers every event, then ends the stream
      done.await();
      if (failure[0] != null) {
        System.err.println("send: " + target + ": " + failure[0].getMessage());
        return 2;
      }
      synchronized (acks) {
        boolean allAccepted = acks.stream().allMatch(ack -> ack.getStatus() == Ack.Status.STATUS_ACCEPTED);
        return acks.size() == events.size() && allAccepted ? 0 : 1;
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  static List<Event> events(String userId) {
    String run = UUID.randomUUID().toString();
    Instant now = Instant.now();
    Timestamp timestamp = Timestamp.newBuilder().setSeconds(now.getEpochSecond()).setNanos(now.getNano()).build();
    Struct traits =
        Struct.newBuilder()
            .putFields("email", Value.newBuilder().setStringValue(userId + "@example.com").build())
            .putFields("plan", Value.newBuilder().setStringValue("pro").build())
            .build();
    Struct properties =
        Struct.newBuilder()
            .putFields("revenue", Value.newBuilder().setNumberValue(19.99).build())
            .putFields("currency", Value.newBuilder().setStringValue("USD").build())
            .build();
    return List.of(
        Event.newBuilder()
            .setMessageId("java-identify-" + run)
            .setUserId(userId)
            .setTimestamp(timestamp)
            .setIdentify(Identify.newBuilder().setTraits(traits))
            .build(),
        Event.newBuilder()
            .setMessageId("java-track-" + run)
            .setUserId(userId)
            .setTimestamp(timestamp)
            .setTrack(Track.newBuilder().setEvent("Order Completed").setProperties(properties))
            .build());
  }
}
