"""Kafka's errors as the relay sees them (``eventbus.kafka``): which belong to one event, which to the
transport, which mean the producer cannot go on; and a call into the producer that turns a fatal
error into an exception Python can catch."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

# Errors that belong to one message: retrying the transport will not fix them. Everything else (broker
# down, timeouts, topic missing, authorization failures, fatal producer errors) is a transport failure,
# which counts no attempt against the events: it would fail every event alike.
PER_EVENT_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
    }
)
TOPIC_MISSING_CODES = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
# The producer's idempotence state is broken (a broker that lost it, a fenced epoch): librdkafka does not
# always flag these delivery reports fatal(), but that producer cannot go on; a new one starts afresh.
PRODUCER_STATE_CODES = frozenset(
    {
        KafkaError._FATAL,
        KafkaError._FENCED,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)

# Failed batches since the producer last delivered, each with the broker answering the topic's lookup,
# after which the producer is deemed stuck and replaced.
STUCK_BATCHES = 2


class KafkaDeliveryError(Exception):
    """A librdkafka error, named by its code (e.g. ``TOPIC_AUTHORIZATION_FAILED``) in the log line."""

    def __init__(self, error: KafkaError) -> None:
        self.kafka_error = error
        super().__init__(f"{error.name()}: {error.str()}")


def kafka_error(error: BaseException | KafkaError) -> KafkaError | None:
    if isinstance(error, KafkaError):
        return error
    if isinstance(error, KafkaDeliveryError):
        return error.kafka_error
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return error.args[0]
    return None


def serving(call: Callable[..., Any], *args: float) -> Any:
    """Call a producer's ``flush``/``poll``/``purge``, turning a fatal error into a KafkaException.

    confluent-kafka raises a fatal producer error out of these calls as the bare ``KafkaError``
    object, which is not an exception class: no ``except Exception`` (nor ``BaseException``) catches
    it. Raised on the adapter's thread it ended that thread silently, and every later batch waited
    for a thread that was gone; raised in a relay it would end the relay. Only a bare ``except``
    catches it.
    """
    try:
        return call(*args)
    except KafkaException:
        raise
    except:  # see above: the one handler that sees a raised KafkaError
        raised = sys.exc_info()[1]
        if isinstance(raised, KafkaError):
            raise KafkaException(raised) from None
        raise


def is_per_event(error: BaseException | KafkaError) -> bool:
    found = kafka_error(error)
    return found is not None and found.code() in PER_EVENT_CODES and not found.fatal()
