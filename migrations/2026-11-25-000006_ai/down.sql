DELETE FROM users WHERE id = '00000000-0000-4000-8000-00000000a1a1';
ALTER TABLE conversations DROP COLUMN assistant_busy_until;
DROP TABLE ai_usage;
DROP TABLE ai_chat_turns;
DROP TABLE ai_chats;
