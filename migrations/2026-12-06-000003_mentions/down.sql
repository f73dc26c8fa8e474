DROP TABLE message_mentions;
