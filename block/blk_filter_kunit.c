// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for the registry of block device filters.
 */
#include <kunit/test.h>
#include <linux/bio.h>
#include <linux/blk-filter.h>
#include <linux/err.h>
#include <linux/module.h>

#include "blk.h"

static struct blkfilter *kunit_attach(struct block_device *bdev)
{
	return ERR_PTR(-EOPNOTSUPP);
}

static void kunit_detach(struct blkfilter *flt)
{
}

static bool kunit_submit_bio(struct blkfilter *flt, struct bio *bio)
{
	return false;
}

#define KUNIT_FILTER(_name) {			\
	.owner = THIS_MODULE,			\
	.name = _name,				\
	.attach = kunit_attach,			\
	.detach = kunit_detach,			\
	.submit_bio = kunit_submit_bio,		\
}

/* Copy a name into a user-style, fixed-size name buffer. */
static void set_name(char buf[BLKFILTER_NAME_LENGTH], const char *name)
{
	memset(buf, 0, BLKFILTER_NAME_LENGTH);
	strscpy(buf, name, BLKFILTER_NAME_LENGTH);
}

static void blkfilter_register_and_find(struct kunit *test)
{
	struct blkfilter_operations ops = KUNIT_FILTER("kunit-find");
	const struct blkfilter_operations *found;
	char name[BLKFILTER_NAME_LENGTH];

	set_name(name, "kunit-find");
	KUNIT_EXPECT_PTR_EQ(test, blkfilter_get(name), ERR_PTR(-ENOENT));

	KUNIT_ASSERT_EQ(test, blkfilter_register(&ops), 0);
	found = blkfilter_get(name);
	KUNIT_EXPECT_PTR_EQ(test, found, &ops);
	if (!IS_ERR(found))
		blkfilter_put(found);

	blkfilter_unregister(&ops);
	KUNIT_EXPECT_PTR_EQ(test, blkfilter_get(name), ERR_PTR(-ENOENT));
}

static void blkfilter_register_duplicate(struct kunit *test)
{
	struct blkfilter_operations first = KUNIT_FILTER("kunit-dup");
	struct blkfilter_operations second = KUNIT_FILTER("kunit-dup");
	const struct blkfilter_operations *found;
	char name[BLKFILTER_NAME_LENGTH];

	KUNIT_ASSERT_EQ(test, blkfilter_register(&first), 0);
	KUNIT_EXPECT_EQ(test, blkfilter_register(&second), -EBUSY);

	/* The refused duplicate did not replace the first one. */
	set_name(name, "kunit-dup");
	found = blkfilter_get(name);
	KUNIT_EXPECT_PTR_EQ(test, found, &first);
	if (!IS_ERR(found))
		blkfilter_put(found);

	blkfilter_unregister(&first);
	KUNIT_EXPECT_EQ(test, blkfilter_register(&second), 0);
	blkfilter_unregister(&second);
}

static void blkfilter_register_bad_ops(struct kunit *test)
{
	char long_name[BLKFILTER_NAME_LENGTH + 1];
	struct blkfilter_operations ops = KUNIT_FILTER("");

	KUNIT_EXPECT_EQ(test, blkfilter_register(&ops), -EINVAL);

	ops.name = NULL;
	KUNIT_EXPECT_EQ(test, blkfilter_register(&ops), -EINVAL);

	/* The name and its NUL must fit the user space buffer. */
	memset(long_name, 'x', BLKFILTER_NAME_LENGTH);
	long_name[BLKFILTER_NAME_LENGTH] = '\0';
	ops.name = long_name;
	KUNIT_EXPECT_EQ(test, blkfilter_register(&ops), -EINVAL);
	long_name[BLKFILTER_NAME_LENGTH - 1] = '\0';
	KUNIT_EXPECT_EQ(test, blkfilter_register(&ops), 0);
	blkfilter_unregister(&ops);

	ops.name = "kunit-no-submit";
	ops.submit_bio = NULL;
	KUNIT_EXPECT_EQ(test, blkfilter_register(&ops), -EINVAL);
}

static void blkfilter_get_unterminated(struct kunit *test)
{
	struct blkfilter_operations ops = KUNIT_FILTER("kunit-unterminated");
	char name[BLKFILTER_NAME_LENGTH];

	KUNIT_ASSERT_EQ(test, blkfilter_register(&ops), 0);

	/* A registered name followed by garbage instead of a NUL. */
	memset(name, 'x', sizeof(name));
	memcpy(name, ops.name, strlen(ops.name));
	KUNIT_EXPECT_PTR_EQ(test, blkfilter_get(name), ERR_PTR(-EINVAL));

	set_name(name, "");
	KUNIT_EXPECT_PTR_EQ(test, blkfilter_get(name), ERR_PTR(-ENOENT));

	blkfilter_unregister(&ops);
}

static void blkfilter_unregister_allows_reuse(struct kunit *test)
{
	struct blkfilter_operations ops = KUNIT_FILTER("kunit-reuse");
	int i;

	for (i = 0; i < 3; i++) {
		KUNIT_ASSERT_EQ(test, blkfilter_register(&ops), 0);
		blkfilter_unregister(&ops);
	}
}

static struct kunit_case blkfilter_test_cases[] = {
	KUNIT_CASE(blkfilter_register_and_find),
	KUNIT_CASE(blkfilter_register_duplicate),
	KUNIT_CASE(blkfilter_register_bad_ops),
	KUNIT_CASE(blkfilter_get_unterminated),
	KUNIT_CASE(blkfilter_unregister_allows_reuse),
	{}
};

static struct kunit_suite blkfilter_test_suite = {
	.name = "blkfilter",
	.test_cases = blkfilter_test_cases,
};
kunit_test_suite(blkfilter_test_suite);

MODULE_DESCRIPTION("KUnit tests for block device filters");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS("EXPORTED_FOR_KUNIT_TESTING");
