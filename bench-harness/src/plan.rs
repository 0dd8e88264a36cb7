//! Who does what: topic names, producer and consumer actors, and the threads they run on.
//!
//! OMB's model: each topic has `producersPerTopic` producers and `subscriptionsPerTopic`
//! subscriptions; a subscription is an independent reader of every partition of its topic,
//! and its partitions are split among `consumerPerSubscription` consumers by range
//! assignment (Kafka's `RangeAssignor`: consecutive ranges, the first `partitions mod
//! consumers` consumers take one extra). Actors are spread round-robin over a small, fixed
//! number of threads, each thread multiplexing its actors over one driver handle.

use std::ops::Range;

use crate::workload::Workload;

/// Kafka's longest topic name.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// One producer: sends to one topic on its own schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerActorPlan {
    /// Index among all producers of the run, `0..producers`: its place in the rate schedule.
    pub producer_index: u32,
    pub topic_index: u32,
}

/// One consumer: reads a range of one topic's partitions for one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerActorPlan {
    pub topic_index: u32,
    /// Index among all subscriptions of the run: `topic × subscriptionsPerTopic + s`.
    pub subscription_group: u32,
    pub partitions: Range<u32>,
}

/// The whole layout of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub topic_names: Vec<String>,
    pub partitions_per_topic: u32,
    pub producers: u32,
    /// Subscriptions over all topics; each should receive everything sent to its topic.
    pub subscription_groups: u32,
    pub subscriptions_per_topic: u32,
    pub producer_threads: Vec<Vec<ProducerActorPlan>>,
    pub consumer_threads: Vec<Vec<ConsumerActorPlan>>,
}

impl Plan {
    /// Lays out a workload over at most `producer_threads` and `consumer_threads` threads
    /// (fewer when there are fewer actors).
    pub fn new(workload: &Workload, producer_threads: usize, consumer_threads: usize) -> Plan {
        assert!(producer_threads > 0 && consumer_threads > 0);
        let prefix = topic_prefix(&workload.name);
        let topic_names: Vec<String> = (0..workload.topics)
            .map(|index| format!("{prefix}-{index}"))
            .collect();

        let mut producers = Vec::new();
        for producer_in_topic in 0..workload.producers_per_topic {
            for topic_index in 0..workload.topics {
                producers.push(ProducerActorPlan {
                    producer_index: producer_in_topic * workload.topics + topic_index,
                    topic_index,
                });
            }
        }
        let producers_total = producers.len() as u32;

        let mut consumers = Vec::new();
        for topic_index in 0..workload.topics {
            for subscription in 0..workload.subscriptions_per_topic {
                let subscription_group =
                    topic_index * workload.subscriptions_per_topic + subscription;
                for consumer in 0..workload.consumer_per_subscription {
                    consumers.push(ConsumerActorPlan {
                        topic_index,
                        subscription_group,
                        partitions: range_assignment(
                            workload.partitions_per_topic,
                            workload.consumer_per_subscription,
                            consumer,
                        ),
                    });
                }
            }
        }

        Plan {
            topic_names,
            partitions_per_topic: workload.partitions_per_topic,
            producers: producers_total,
            subscription_groups: workload.topics * workload.subscriptions_per_topic,
            subscriptions_per_topic: workload.subscriptions_per_topic,
            producer_threads: spread(producers, producer_threads),
            consumer_threads: spread(consumers, consumer_threads),
        }
    }
}

/// Deals actors round-robin onto at most `threads` threads; no thread is left empty.
fn spread<T>(actors: Vec<T>, threads: usize) -> Vec<Vec<T>> {
    let threads = threads.min(actors.len());
    let mut lists: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, actor) in actors.into_iter().enumerate() {
        lists[index % threads].push(actor);
    }
    lists
}

/// Kafka's range assignment: the partitions consumer `consumer_index` of `consumers` reads.
pub fn range_assignment(partitions: u32, consumers: u32, consumer_index: u32) -> Range<u32> {
    assert!(consumer_index < consumers);
    let share = partitions / consumers;
    let extra = partitions % consumers;
    let start = consumer_index * share + consumer_index.min(extra);
    let length = share + u32::from(consumer_index < extra);
    start..start + length
}

/// A topic-name prefix from a workload name: runs of characters outside Kafka's
/// `[a-zA-Z0-9._-]` become one `-`, trimmed at both ends and kept short enough for an index.
pub fn topic_prefix(workload_name: &str) -> String {
    let mut prefix = String::with_capacity(workload_name.len());
    for character in workload_name.chars() {
        if character.is_ascii_alphanumeric() || character == '.' || character == '_' {
            prefix.push(character);
        } else if !prefix.ends_with('-') {
            prefix.push('-');
        }
    }
    let trimmed = prefix.trim_matches(|c| c == '-' || c == '.');
    let mut prefix: String = trimmed.chars().take(TOPIC_NAME_BYTES_MAX - 16).collect();
    if prefix.is_empty() {
        prefix = "workload".to_string();
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            name: "test".into(),
            topics: 2,
            partitions_per_topic: 5,
            producers_per_topic: 3,
            subscriptions_per_topic: 2,
            consumer_per_subscription: 2,
            message_size_bytes: 100,
            ..Workload::default()
        }
    }

    #[test]
    fn topic_names_keep_only_kafkas_characters() {
        assert_eq!(
            topic_prefix("1 producer / 1 consumers on 1 topic"),
            "1-producer-1-consumers-on-1-topic"
        );
        assert_eq!(
            topic_prefix("max-rate-1-topic-1-partition-1p-1c-1kb"),
            "max-rate-1-topic-1-partition-1p-1c-1kb"
        );
        assert_eq!(topic_prefix("  /// "), "workload");
        assert_eq!(topic_prefix(".."), "workload");
        assert!(topic_prefix(&"x".repeat(400)).len() < TOPIC_NAME_BYTES_MAX - 10);
    }

    #[test]
    fn range_assignment_gives_the_first_consumers_the_extra_partitions() {
        assert_eq!(range_assignment(16, 1, 0), 0..16);
        assert_eq!(range_assignment(10, 3, 0), 0..4);
        assert_eq!(range_assignment(10, 3, 1), 4..7);
        assert_eq!(range_assignment(10, 3, 2), 7..10);
        assert_eq!(
            range_assignment(2, 3, 2),
            2..2,
            "more consumers than partitions"
        );
        for consumers in 1..12 {
            let mut next = 0;
            for consumer in 0..consumers {
                let range = range_assignment(10, consumers, consumer);
                assert_eq!(range.start, next);
                next = range.end;
            }
            assert_eq!(next, 10, "every partition is read exactly once");
        }
    }

    #[test]
    fn every_subscription_reads_every_partition_of_its_topic_once() {
        let plan = Plan::new(&workload(), 1, 1);
        assert_eq!(plan.topic_names, vec!["test-0", "test-1"]);
        assert_eq!(plan.producers, 6);
        assert_eq!(plan.subscription_groups, 4);
        let consumers: Vec<&ConsumerActorPlan> = plan.consumer_threads.iter().flatten().collect();
        assert_eq!(consumers.len(), 8);
        for group in 0..plan.subscription_groups {
            let mut partitions: Vec<u32> = consumers
                .iter()
                .filter(|consumer| consumer.subscription_group == group)
                .flat_map(|consumer| consumer.partitions.clone())
                .collect();
            partitions.sort_unstable();
            assert_eq!(partitions, (0..5).collect::<Vec<u32>>());
        }
    }

    #[test]
    fn producers_have_distinct_schedule_places_and_spread_over_threads() {
        let plan = Plan::new(&workload(), 4, 3);
        assert_eq!(plan.producer_threads.len(), 4);
        assert_eq!(plan.consumer_threads.len(), 3);
        let mut indexes: Vec<u32> = plan
            .producer_threads
            .iter()
            .flatten()
            .map(|producer| producer.producer_index)
            .collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..6).collect::<Vec<u32>>());
        let per_topic = |topic| {
            plan.producer_threads
                .iter()
                .flatten()
                .filter(|producer| producer.topic_index == topic)
                .count()
        };
        assert_eq!((per_topic(0), per_topic(1)), (3, 3));
    }

    #[test]
    fn there_are_never_more_threads_than_actors() {
        let single = Workload {
            topics: 1,
            producers_per_topic: 1,
            subscriptions_per_topic: 1,
            consumer_per_subscription: 1,
            ..workload()
        };
        let plan = Plan::new(&single, 8, 8);
        assert_eq!(plan.producer_threads.len(), 1);
        assert_eq!(plan.consumer_threads.len(), 1);
        let no_subscriptions = Workload {
            subscriptions_per_topic: 0,
            ..workload()
        };
        assert!(Plan::new(&no_subscriptions, 1, 1)
            .consumer_threads
            .is_empty());
    }
}
